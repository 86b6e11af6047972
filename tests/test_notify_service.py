"""The rules fed by a real Monitor watching real run directories, posting to a real receiver:
one POST for a burst of NaN, one for a crash (SIGKILL), one for a completion, none for history."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mudpuppy_callback import RunWriter, encode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.notify.config import NotifyFlags, notify_settings
from mudpuppy_monitor.notify.source import NotificationService
from tests.receiver import Receiver

WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from mudpuppy_callback import RunWriter
w = RunWriter(sys.argv[1], sys.argv[3], max_steps=100)
for step in range(1, 4):
    w.log(step, {"loss": 1.0 / step})
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


def _callback_dir() -> str:
    import mudpuppy_callback

    return os.path.dirname(mudpuppy_callback.__file__)


def _finished_run(root: Path, name: str, t0: float) -> None:
    d = root / name
    d.mkdir(parents=True)
    lines = [
        {"v": 1, "seq": 0, "t": t0, "kind": "start"},
        {"v": 1, "seq": 1, "t": t0 + 1, "kind": "metrics", "step": 1, "values": {"loss": "NaN"}},
        {"v": 1, "seq": 2, "t": t0 + 2, "kind": "end", "status": "completed", "step": 1},
    ]
    (d / "events.jsonl").write_bytes(b"".join(encode_line(x) for x in lines))


async def _wait(rx: Receiver, n: int, timeout: float = 10.0) -> list:
    return await asyncio.to_thread(rx.wait_for, n, timeout)


def test_nan_crash_and_completion_each_post_once_and_history_never(tmp_path: Path) -> None:
    _finished_run(tmp_path, "old-nan-run", time.time() - 3600)  # ended an hour ago: history

    async def main(rx: Receiver) -> list:
        settings = notify_settings(
            None, NotifyFlags(notify=(rx.url(),), dashboard_url="http://box:5980")
        )
        mon = Monitor(tmp_path, poll=True, scan_interval_s=0.1)
        await mon.start()
        service = NotificationService(mon, settings, tick_s=0.1)
        await service.start()
        proc = None
        try:
            live = RunWriter(tmp_path, "live", max_steps=1000, gpus=[])
            for step in range(1, 20):
                live.log(step, {"loss": 2.0 - step * 0.01, "grad_norm": 1.0})
            for step in range(20, 520):  # a burst of 500 NaN steps
                live.log(step, {"loss": float("nan"), "grad_norm": float("nan")})
            [nan] = await _wait(rx, 1)
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(tmp_path), _callback_dir(), "victim"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            await asyncio.sleep(0.5)  # seen running first
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            await _wait(rx, 2)
            live.close("completed")
            got = await _wait(rx, 3)
            await asyncio.sleep(0.5)  # anything more would arrive now
            return [nan, *got[1:], *rx.requests[3:]]
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            await service.stop()
            await mon.stop()

    with Receiver() as rx:
        requests = asyncio.run(main(rx))
    bodies = [r.json() for r in requests]
    assert [(b["kind"], b["run"]) for b in bodies] == [
        ("nonfinite", "live"),
        ("crashed", "victim"),
        ("completed", "live"),
    ]
    nan = bodies[0]
    assert (nan["step"], nan["series"], nan["value"]) == (20, "loss", "NaN")
    assert nan["message"] == "loss is NaN at step 20 (also grad_norm)"
    assert nan["url"] == "http://box:5980/#run=live"
    assert bodies[1]["message"].startswith("crashed: process ") and bodies[1]["step"] == 3
    assert bodies[2]["message"] == "completed at step 519"


def test_eval_improvement_when_a_channel_asks_for_it(tmp_path: Path) -> None:
    async def main(rx: Receiver) -> list:
        config_path = tmp_path / "mudpuppy.toml"
        config_path.write_text(
            "[[notify.channels]]\n"
            f'url = "{rx.url()}"\n'
            "rules = { eval_improved = true, completed = false }\n"
        )
        from mudpuppy_monitor.config import load_config

        settings = notify_settings(load_config(config_path))
        root = tmp_path / "runs"
        root.mkdir()
        w = RunWriter(root, "ev", max_steps=100, gpus=[])
        w.log_eval(10, {"eval_loss": 0.9})  # before the start: the mark to beat
        mon = Monitor(root, poll=True, scan_interval_s=0.1)
        await mon.start()
        service = NotificationService(mon, settings, tick_s=0.1)
        await service.start()
        try:
            w.log_eval(20, {"eval_loss": 0.95})  # worse: nothing
            await asyncio.sleep(0.4)
            w.log_eval(30, {"eval_loss": 0.7})
            await _wait(rx, 1)
            w.close("completed")  # switched off for this channel
            await asyncio.sleep(0.5)
            return list(rx.requests)
        finally:
            await service.stop()
            await mon.stop()

    with Receiver() as rx:
        requests = asyncio.run(main(rx))
    [body] = [r.json() for r in requests]
    assert (body["kind"], body["step"], body["value"]) == ("eval_improved", 30, 0.7)
    assert body["message"] == "eval_loss improved to 0.7 at step 30 (best was 0.9)"


def test_notifications_import_no_front_end_and_no_core() -> None:
    code = (
        "import sys, mudpuppy_monitor.notify, mudpuppy_monitor.config;"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mudpuppy_monitor'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.split()
    assert "mudpuppy_monitor.notify.source" in loaded
    for part in ("server", "tui", "cli", "core", "gpu", "demo"):
        assert not any(m.startswith(f"mudpuppy_monitor.{part}") for m in loaded), part


def test_a_run_loaded_in_the_background_is_history_too(tmp_path: Path, monkeypatch) -> None:
    """A run still loading when watching began is met once it has loaded, dated like any other:
    one that ended an hour ago (with a NaN) is not news then."""
    import threading

    from mudpuppy_monitor.core import loading
    from mudpuppy_monitor.core.changes import Changes
    from mudpuppy_monitor.notify.rules import RuleEngine
    from mudpuppy_monitor.notify.source import MonitorSource

    monkeypatch.setattr(loading, "LATER_MIN_BYTES", 100_000)
    t0 = time.time() - 3600
    d = tmp_path / "old"
    d.mkdir()
    lines = [{"v": 1, "seq": 0, "t": t0, "kind": "start"}]
    lines += [
        {"v": 1, "seq": i, "t": t0 + i / 10, "kind": "metrics", "step": i,
         "values": {"loss": "NaN" if i == 5 else 1.0 / i}}
        for i in range(1, 4000)
    ]  # fmt: skip
    lines.append({"v": 1, "seq": 4000, "t": t0 + 400, "kind": "end", "status": "completed"})
    (d / "events.jsonl").write_bytes(b"".join(encode_line(x) for x in lines))
    mon = Monitor(tmp_path, parallel=False)
    mon.background = True  # as once started: the run loads in the background
    gate = threading.Event()
    install = mon._install

    def gated(*args: object) -> None:
        gate.wait(60)
        install(*args)  # type: ignore[arg-type]

    mon._install = gated  # type: ignore[method-assign]
    mon.refresh()
    assert mon.summary("old").loading is not None  # type: ignore[union-attr]
    source = MonitorSource(mon, RuleEngine())
    source.prime()  # watching begins while it loads
    assert source.changed(Changes(updated=frozenset({"old"}))) == []  # progress only
    gate.set()
    assert mon.wait_loaded(60)
    assert mon.summary("old").status == "completed"  # type: ignore[union-attr]
    assert source.changed(Changes(updated=frozenset({"old"}))) == []
    mon._backlog.stop()
