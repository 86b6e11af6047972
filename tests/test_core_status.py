"""The status machine: real writer processes killed, `end` events, stalls under an injected clock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.status import default_pid_alive

T0 = 1_700_000_000.0
HOST = socket.gethostname()

WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from mudpuppy_callback import RunWriter
w = RunWriter(sys.argv[1], "job", max_steps=100)
for step in range(1, 6):
    w.log(step, {"loss": 1.0 / step})
print("ready", flush=True)
time.sleep(120)
"""


def _callback_dir() -> str:
    import mudpuppy_callback

    return os.path.dirname(mudpuppy_callback.__file__)


def test_writer_killed_with_sigkill_is_crashed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), _callback_dir()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        mon = Monitor(tmp_path)
        assert mon.refresh() == {"job"}
        s = mon.summary("job")
        assert s is not None
        assert (s.status, s.pid, s.host, s.step, s.max_steps) == ("running", proc.pid, HOST, 5, 100)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        mon.refresh()
        s = mon.summary("job")
        assert s is not None and s.status == "crashed" and s.error is None
        events = (tmp_path / "job" / "events.jsonl").read_bytes()
        assert b'"end"' not in events  # killed: no end line was written
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_zombie_counts_as_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while default_pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # exited but not yet reaped: a zombie
    assert default_pid_alive(proc.pid) is False
    assert default_pid_alive(os.getpid()) is True
    proc.wait()
    assert default_pid_alive(proc.pid) is False


def _native(root: Path, name: str, events: list[dict], meta: dict | None = None) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        (d / "meta.json").write_text(json.dumps(meta))
    lines = [
        encode_line({"v": 1, "seq": i, "t": e.pop("t"), "kind": e.pop("kind"), **e})
        for i, e in enumerate(events)
    ]
    (d / "events.jsonl").write_bytes(b"".join(lines))


def _steps(n: int, gap: float, start_t: float = T0) -> list[dict]:
    out: list[dict] = [{"t": start_t, "kind": "start"}]
    for i in range(1, n + 1):
        out.append({"t": start_t + i * gap, "kind": "metrics", "step": i, "values": {"loss": 1.0}})
    return out


@pytest.mark.parametrize(
    ("status", "error"),
    [("completed", None), ("failed", "CUDA out of memory"), ("interrupted", None)],
)
def test_end_event_sets_the_status(tmp_path: Path, status: str, error: str | None) -> None:
    end: dict = {"t": T0 + 11, "kind": "end", "status": status, "step": 10}
    if error:
        end["error"] = error
    meta = {"host": HOST, "pid": 999_999_999, "max_steps": 10}
    _native(tmp_path, "r", _steps(10, 1.0) + [end], meta)
    mon = Monitor(tmp_path, clock=lambda: T0 + 5000)
    mon.refresh()
    s = mon.summary("r")
    assert s is not None
    assert (s.status, s.error, s.step) == (status, error, 10)
    assert s.eta_s == (0.0 if status == "completed" else None)
    assert s.elapsed_s == 11.0  # start to end, not to now
    markers = mon.markers_since("r", 0)
    assert markers[-1]["kind"] == "end" and markers[-1]["step"] == 10


def test_stall_window_follows_the_usual_gap(tmp_path: Path) -> None:
    now = [0.0]
    meta = {"host": HOST, "pid": 4242, "max_steps": 1000}
    _native(tmp_path, "fast", _steps(20, 1.0), meta)  # 1 s apart: window = 60 s
    _native(tmp_path, "slow", _steps(20, 30.0), meta)  # 30 s apart: window = 300 s
    mon = Monitor(tmp_path, clock=lambda: now[0], pid_alive=lambda pid: pid == 4242)

    def status(run: str, silence: float) -> str:
        s = mon.summary(run)
        assert s is not None and s.last_event_t is not None
        now[0] = s.last_event_t + silence
        s = mon.summary(run)
        assert s is not None and s.last_event_age_s == pytest.approx(silence)
        return s.status

    mon.refresh()
    assert status("fast", 59.0) == "running"
    assert status("fast", 61.0) == "stalled"
    assert status("slow", 299.0) == "running"
    assert status("slow", 301.0) == "stalled"
    # the writer process is gone: crashed wins over stalled
    mon2 = Monitor(tmp_path, clock=lambda: now[0], pid_alive=lambda pid: False)
    mon2.refresh()
    assert mon2.summary("fast").status == "crashed"  # type: ignore[union-attr]


def test_a_stall_window_set_by_the_user_replaces_the_learned_one(tmp_path: Path) -> None:
    now = [0.0]
    meta = {"host": HOST, "pid": 4242, "max_steps": 1000}
    _native(tmp_path, "slow", _steps(20, 30.0), meta)  # learned window: 300 s
    _native(tmp_path, "far", _steps(20, 1.0), {"host": "elsewhere", "pid": 1})
    mon = Monitor(
        tmp_path, clock=lambda: now[0], pid_alive=lambda pid: pid == 4242, stall_after_s=900.0
    )
    mon.refresh()

    def status(run: str, silence: float) -> str:
        s = mon.summary(run)
        assert s is not None and s.last_event_t is not None
        now[0] = s.last_event_t + silence
        return mon.summary(run).status  # type: ignore[union-attr]

    assert status("slow", 301.0) == "running"  # stalled by the learned window
    assert status("slow", 899.0) == "running"
    assert status("slow", 901.0) == "stalled"
    # another host: unknown after max(15 min, 3 x the window)
    assert status("far", 2699.0) == "stalled"
    assert status("far", 2701.0) == "unknown"


def test_stall_is_reported_as_a_change_by_the_timer_pass(tmp_path: Path) -> None:
    now = [T0 + 20]
    _native(tmp_path, "r", _steps(20, 1.0), {"host": HOST, "pid": 1})
    mon = Monitor(tmp_path, clock=lambda: now[0], pid_alive=lambda pid: True)
    assert mon.refresh() == {"r"}
    assert mon.refresh() == set()  # nothing new
    now[0] += 100
    assert mon.refresh() == {"r"}  # no new line, but the status changed
    assert mon.summary("r").status == "stalled"  # type: ignore[union-attr]


def test_other_host_goes_unknown_after_a_long_silence(tmp_path: Path) -> None:
    now = [0.0]
    _native(tmp_path, "r", _steps(20, 1.0), {"host": "elsewhere", "pid": 1})
    called: list[int] = []
    mon = Monitor(tmp_path, clock=lambda: now[0], pid_alive=lambda pid: called.append(pid) or False)
    mon.refresh()
    last = T0 + 20
    for silence, expected in (
        (10, "running"),
        (120, "stalled"),
        (899, "stalled"),
        (901, "unknown"),
    ):
        now[0] = last + silence
        assert mon.summary("r").status == expected  # type: ignore[union-attr]
    assert called == []  # a pid on another host means nothing here


def test_restart_after_end_runs_again(tmp_path: Path) -> None:
    events = _steps(5, 1.0)
    events.append({"t": T0 + 6, "kind": "end", "status": "interrupted", "step": 5})
    events.append({"t": T0 + 100, "kind": "start", "resumed_from": 5})
    events.append({"t": T0 + 101, "kind": "metrics", "step": 6, "values": {"loss": 0.5}})
    _native(tmp_path, "r", events, {"host": HOST, "pid": 7})
    mon = Monitor(tmp_path, clock=lambda: T0 + 102, pid_alive=lambda pid: True)
    mon.refresh()
    s = mon.summary("r")
    assert s is not None and s.status == "running" and s.step == 6
    kinds = [(m["kind"], m["step"]) for m in mon.markers_since("r", 0)]
    assert kinds == [("end", 5), ("restart", 5)]
    assert "resumed from 5" in mon.markers_since("r", 1)[0]["detail"]


def test_rates_eta_and_elapsed(tmp_path: Path) -> None:
    events: list[dict] = [{"t": T0, "kind": "start"}]
    for i in range(1, 301):  # 10 steps/s, 512 tokens a step, for 30 s
        events.append(
            {
                "t": T0 + i / 10,
                "kind": "metrics",
                "step": i,
                "values": {"loss": 1.0, "tokens_seen": 512.0 * i},
            }
        )
    events.append({"t": T0 + 31, "kind": "progress", "step": 310})
    _native(tmp_path, "r", events, {"host": HOST, "pid": 7, "max_steps": 1310, "created": T0 - 5})
    mon = Monitor(tmp_path, clock=lambda: T0 + 32, pid_alive=lambda pid: True)
    mon.refresh()
    s = mon.summary("r")
    assert s is not None
    assert s.step == 310
    assert s.steps_per_s == pytest.approx(309 / 30.9)  # first point in the window to the last
    assert s.tokens_per_s == pytest.approx(5120.0)
    assert s.eta_s == pytest.approx(1000 / s.steps_per_s)
    assert s.started_t == T0 - 5 and s.elapsed_s == pytest.approx(37.0)
    rates = mon.series("r", ["steps_per_s", "tokens_per_s"], points=10**6)
    assert rates["steps_per_s"]["count"] == 299
    assert rates["steps_per_s"]["y"][0] == pytest.approx(10.0, rel=1e-4)
    assert rates["tokens_per_s"]["y"][-1] == pytest.approx(5120.0, rel=1e-4)
