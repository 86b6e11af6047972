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
    # replaced by a file with the same old history and one fresh NaN (written aside, then
    # renamed over: a new inode, as a restarted trainer's new file has)
    old = run.events
    run.events = run.path / "events.jsonl.new"
    run.seq = 0
    run.append("start")
    write_nan_streaks(run, 3, t0=time.time() - 7200)
    run.metrics(100, loss=math.nan)
    os.replace(run.events, old)
    alerts = alerts_after_refresh(monitor, tracker)
    assert [(a["kind"], a["step"]) for a in alerts] == [("nonfinite", 100)]


def write_trainer_state(path, losses: list[float]) -> None:
    """A transformers trainer_state.json: log_history rows carry no wall time."""
    import json

    rows = [{"step": i + 1, "epoch": 0.1 * (i + 1), "loss": v} for i, v in enumerate(losses)]
    doc = {"global_step": len(losses), "max_steps": 100, "log_history": rows}
    tmp = path / "trainer_state.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path / "trainer_state.json")


FLAT = [1.0 + (i % 3) / 100 for i in range(70)]  # a quiet loss, then a spike at step 71


def test_unknown_times_are_null_and_nonfinite_values_strings(tmp_path):
    from mudpuppy_monitor import jsonutil

    run = tmp_path / "hf"
    run.mkdir()
    write_trainer_state(run, FLAT)
    monitor, tracker = tracker_over(tmp_path)
    write_trainer_state(run, [*FLAT, 100.0, 0.5])
    ids = monitor.refresh()
    msgs = [m for m, _ in tracker.messages(Changes(updated=frozenset(ids)))]
    wire = [jsonutil.loads(jsonutil.dumps(m)) for m in msgs]
    points = [m for m in wire if m["type"] == "points"]
    assert points[0]["series"]["loss"] == {
        "i0": 70,
        "step": [71, 72],
        "t": [None, None],  # unknown: null (a non-finite value would be a string)
        "y": [100.0, 0.5],
    }
    alerts = [(a["kind"], a["step"], a["t"]) for a in wire if a["type"] == "alert"]
    assert alerts == [("spike", 71, None)]


def test_unknown_marker_times_are_null_over_http(tmp_path):
    from tests.serverutil import LiveServer

    run = tmp_path / "hf"
    run.mkdir()
    write_trainer_state(run, [*FLAT, 100.0])
    with LiveServer(tmp_path) as server:
        detail = server.get_json("/api/runs/hf")
        assert [(m["kind"], m["step"], m["t"]) for m in detail["markers"]] == [("spike", 71, None)]


def test_lora_is_looked_at_only_when_the_run_has_a_new_event(tmp_path, monkeypatch):
    run = RunDir(tmp_path, "l")
    layers = {"model.layers.0.q_proj": {"A": 1.0, "B": 0.5}}
    run.metrics(1, loss=1.0)
    run.lora(1, layers)
    monitor, tracker = tracker_over(tmp_path)
    calls = []
    real = monitor.last_lora
    monkeypatch.setattr(monitor, "last_lora", lambda *a, **k: calls.append(a) or real(*a, **k))

    def change() -> list[dict]:
        monitor.refresh()
        return [m for m, _ in tracker.messages(Changes(updated=frozenset({"l"})))]

    run.metrics(2, loss=0.9)
    assert [m["type"] for m in change()] == ["runs", "points"]
    assert len(calls) == 1  # a new event: looked at, nothing new
    for _ in range(3):  # changes that carry no new event (a status pass, a meta rewrite)
        assert [m["type"] for m in change()] == ["runs"]
    assert len(calls) == 1
    run.lora(2, {"model.layers.0.q_proj": {"A": 2.0, "B": 0.25}})
    (lora,) = [m for m in change() if m["type"] == "lora"]
    assert (lora["run"], lora["step"], list(lora["layers"])) == ("l", 2, ["model.layers.0.q_proj"])
    cell = lora["layers"]["model.layers.0.q_proj"]
    assert (cell["A"], cell["B"]) == (2.0, 0.25) and math.isnan(cell["update"])
    assert len(calls) == 2


def test_gpu_attribution_wire_shape_is_written_by_the_server(monkeypatch):
    from mudpuppy_monitor.gpu import records
    from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample

    def not_the_wire(self):
        raise AssertionError("the GPU records' to_dict is not the protocol")

    for cls in (records.Attribution, records.RunOnDevice, records.GpuProcess):
        monkeypatch.setattr(cls, "to_dict", not_the_wire)
    gib = 1024**3
    sample = GpuSample(
        index=0,
        name="NVIDIA H100",
        uuid="GPU-0",
        t=1.0,
        processes=(GpuProcess(4242, 2 * gib), GpuProcess(999, gib)),
    )
    run = {"id": "a", "pid": 4242, "gpus": [], "host": "box", "status": "running"}
    got = feed.attribution_dict([sample], [run], hostname="box", ppid_of=lambda pid: None)
    assert got == {
        "0": {
            "runs": ["a"],
            "evidence": [
                {
                    "run_id": "a",
                    "reason": "pid",
                    "processes": [{"pid": 4242, "used_bytes": 2 * gib}],
                    "used_bytes": 2 * gib,
                }
            ],
            "others": [{"pid": 999, "used_bytes": gib}],
            "others_used_bytes": gib,
        }
    }
