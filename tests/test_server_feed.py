"""The change tracker (server/feed.py) over a real Monitor and real run files, no HTTP."""

from __future__ import annotations

import math
import os
import time

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.changes import Changes
from mudpuppy_monitor.server import feed
from tests.serverutil import RunDir


def write_nan_streaks(run: RunDir, streaks: int, t0: float) -> None:
    """`streaks` separate NaN streaks (NaN, 1.0, NaN, 1.0, ...), one line per step."""
    for k in range(2 * streaks):
        run.metrics(k + 1, t=t0 + k * 0.001, loss=math.nan if k % 2 == 0 else 1.0)


def tracker_over(root) -> tuple[Monitor, feed.ChangeTracker]:
    monitor = Monitor(root, parallel=False)
    monitor.refresh()
    tracker = feed.ChangeTracker(monitor)
    tracker.prime()
    return monitor, tracker


def alerts_after_refresh(monitor: Monitor, tracker: feed.ChangeTracker) -> list[dict]:
    ids = monitor.refresh()
    msgs = [m for m, _ in tracker.messages(Changes(updated=frozenset(ids)))]
    return [m for m in msgs if m["type"] == "alert"]


def test_a_run_first_seen_with_old_markers_raises_no_alert_for_them(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    monitor, tracker = tracker_over(root)
    run = RunDir(tmp_path / "elsewhere", "old")
    write_nan_streaks(run, 300, t0=time.time() - 7200)  # two hours ago
    run.metrics(1000, loss=1.0)  # a fresh last event: the run itself is alive
    os.rename(run.path, root / "old")  # copied in while serving
    assert alerts_after_refresh(monitor, tracker) == []


def test_marker_alerts_are_capped_per_change_with_a_summary(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    monitor, tracker = tracker_over(root)
    run = RunDir(tmp_path / "elsewhere", "burst")
    write_nan_streaks(run, 1000, t0=time.time())
    os.rename(run.path, root / "burst")
    alerts = alerts_after_refresh(monitor, tracker)
    cap = feed.MAX_MARKER_ALERTS
    assert len(alerts) == cap + 1
    assert [a["step"] for a in alerts[:cap]] == [1, 3, 5, 7, 9][:cap]
    assert all(a["kind"] == "nonfinite" for a in alerts)
    assert alerts[-1]["step"] == 1999
    assert alerts[-1]["message"] == f"and {1000 - cap} more (nonfinite) up to step 1999"
    # later changes are capped the same way, and earlier markers are not told twice
    live = RunDir(root, "burst", start=False)
    live.seq = 2001
    for k in range(20):
        live.metrics(3000 + 2 * k, loss=math.nan)
        live.metrics(3001 + 2 * k, loss=1.0)
    alerts = alerts_after_refresh(monitor, tracker)
    assert [a["step"] for a in alerts] == [3000, 3002, 3004, 3006, 3008, 3038]
    assert alerts[-1]["message"] == "and 15 more (nonfinite) up to step 3038"


def test_a_reset_run_does_not_replay_its_old_markers(tmp_path):
    root = tmp_path / "runs"
    run = RunDir(root, "r")
    write_nan_streaks(run, 3, t0=time.time() - 7200)
    run.metrics(100, loss=1.0)
    monitor, tracker = tracker_over(root)
    # replaced by a file with the same old history and one fresh NaN
    os.unlink(run.events)
    run.seq = 0
    run.append("start")
    write_nan_streaks(run, 3, t0=time.time() - 7200)
    run.metrics(100, loss=math.nan)
    alerts = alerts_after_refresh(monitor, tracker)
    assert [(a["kind"], a["step"]) for a in alerts] == [("nonfinite", 100)]
