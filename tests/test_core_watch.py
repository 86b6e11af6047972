"""The watch loop keeps the picture moving when the file watcher cannot run: it polls instead,
says why once, and goes back to the watcher when it works again."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor, watch

T0 = 1_700_000_000.0


def _line(seq: int, kind: str = "metrics", **extra: Any) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **extra})


def _write_run(root: Path, name: str, pid: int = 4242) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "meta.json").write_text(
        f'{{"format": "mudpuppy-run/1", "name": "{name}", "pid": {pid}, "host": "here"}}'
    )
    events = run / "events.jsonl"
    events.write_bytes(_line(0, "start") + _line(1, step=1, values={"loss": 2.0}))
    return events


class FailingWatcher:
    """Stands in for watchfiles.awatch: raises like RustNotify does when it cannot start, the
    first `fail` times, then behaves like a quiet watcher (an empty batch per timeout)."""

    def __init__(self, exc: BaseException, fail: int = 10**9) -> None:
        self.exc = exc
        self.fail = fail
        self.created = 0

    def __call__(self, *paths: str, **kwargs: Any) -> AsyncIterator[set[tuple[Any, str]]]:
        self.created += 1
        attempt = self.created
        timeout_s = kwargs["rust_timeout"] / 1000
        stop: asyncio.Event = kwargs["stop_event"]

        async def gen() -> AsyncIterator[set[tuple[Any, str]]]:
            if attempt <= self.fail:
                raise self.exc
            while not stop.is_set():
                await asyncio.sleep(timeout_s)
                yield set()

        return gen()


async def _until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "exc, hint",
    [
        (PermissionError(errno.EACCES, "Permission denied (os error 13)"), "make it readable"),
        (OSError(errno.EMFILE, "Too many open files (os error 24)"), "max_user_instances"),
        (OSError("OS file watch limit reached."), "max_user_watches"),
    ],
)
def test_watcher_that_cannot_start_falls_back_to_polling(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    hint: str,
) -> None:
    monkeypatch.setattr(watch, "WATCH_RETRY_FIRST_S", 0.3)
    root = tmp_path / "runs"
    events = _write_run(root, "a")
    alive = {4242}
    mon = Monitor(
        root, scan_interval_s=0.1, clock=lambda: T0 + 5, pid_alive=alive.__contains__, host="here"
    )
    fake = FailingWatcher(exc)

    async def scenario() -> None:
        mon.refresh()
        stop = asyncio.Event()
        task = asyncio.create_task(watch.watch_loop(mon, stop, make_watcher=fake))
        try:
            # known runs move: an appended line reaches the store
            with events.open("ab") as f:
                f.write(_line(2, step=2, values={"loss": 1.5}))
            await _until(lambda: (s := mon.summary("a")) is not None and s.step == 2)
            # new runs are found
            _write_run(root, "b")
            await _until(lambda: "b" in mon.run_ids())
            # statuses change: the writer's pid is gone without an `end` line
            assert mon.summary("a").status == "running"  # type: ignore[union-attr]
            alive.clear()
            await _until(lambda: mon.summary("a").status == "crashed")  # type: ignore[union-attr]
            # the watcher is tried again (with backoff), not abandoned
            await _until(lambda: fake.created >= 2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.DEBUG, logger="mudpuppy_monitor.core.watch"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # said once, however often it is retried
    assert "Polling the files instead" in warnings[0]
    assert hint in warnings[0]
    assert str(root) in warnings[0]


def test_watcher_that_recovers_is_used_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "WATCH_RETRY_FIRST_S", 0.2)
    root = tmp_path / "runs"
    _write_run(root, "a")
    mon = Monitor(root, scan_interval_s=0.1, clock=lambda: T0 + 5, pid_alive=lambda _: True)
    fake = FailingWatcher(OSError(errno.EMFILE, "Too many open files"), fail=2)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch.watch_loop(mon, stop, make_watcher=fake))
        try:
            await _until(lambda: any("running again" in r.getMessage() for r in caplog.records))
            created = fake.created
            _write_run(root, "b")  # found by the watcher's timer pass
            await _until(lambda: "b" in mon.run_ids())
            assert fake.created == created  # the working watcher was kept
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, logger="mudpuppy_monitor.core.watch"):
        asyncio.run(scenario())
    assert fake.created == 3  # failed, failed after 0.2 s of polling, then worked


def test_retry_waits_grow_and_are_capped() -> None:
    waits = [
        min(watch.WATCH_RETRY_MAX_S, watch.WATCH_RETRY_FIRST_S * 2 ** (n - 1)) for n in range(1, 12)
    ]
    assert waits[:3] == [5.0, 10.0, 20.0]
    assert waits[-1] == watch.WATCH_RETRY_MAX_S


def test_unreadable_directory_is_reported_once_per_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mudpuppy_monitor.core import discovery

    root = tmp_path / "runs"
    _write_run(root, "a")
    secret = root / "secret"
    secret.mkdir()
    real_scan = discovery._scan_dir
    blocked = {str(secret)}

    def scan(path: str, unreadable: set[str] | None = None) -> Any:
        if path in blocked:  # what os.scandir does to a directory this user cannot read
            if unreadable is not None:
                unreadable.add(path)
            return None
        return real_scan(path, unreadable)

    monkeypatch.setattr(discovery, "_scan_dir", scan)
    mon = Monitor(root, clock=lambda: T0, pid_alive=lambda _: True)
    with caplog.at_level(logging.WARNING, logger="mudpuppy_monitor.core.monitor"):
        mon.refresh()
        mon.refresh()
        assert mon.run_ids() == ["a"]
        blocked.clear()  # readable again, then not again: a new episode, a new message
        mon.refresh()
        blocked.add(str(secret))
        mon.refresh()
    skips = [r.getMessage() for r in caplog.records if "not readable" in r.getMessage()]
    assert skips == [f"skipping {secret}: the directory is not readable by this user"] * 2


MONITOR_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    sys.path[:0] = sys.argv[2:]
    from mudpuppy_monitor.core import Monitor

    async def main():
        mon = Monitor(sys.argv[1], scan_interval_s=0.2, pid_alive=lambda pid: True)
        await mon.start()
        print("started", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = mon.summary("a")
            if s is not None and s.step == 2 and "b" in mon.run_ids():
                print("moved", flush=True)
                break
            await asyncio.sleep(0.05)
        await mon.stop()

    asyncio.run(main())
    """
)


def _can_drop_privileges() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(sys.platform != "linux", reason="Linux permissions and inotify")
def test_real_unreadable_directory_does_not_freeze_the_daemon(tmp_path: Path) -> None:
    """A root holding a directory this user cannot read: the watcher starts anyway (or the loop
    polls), runs move, new runs are found."""
    import mudpuppy_callback

    import mudpuppy_monitor

    if os.geteuid() == 0 and not _can_drop_privileges():
        pytest.skip("running as root without setpriv: every directory is readable")
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"mudpuppy-watch-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    try:
        root = base / "runs"
        events = _write_run(root, "a")
        secret = root / "secret"
        secret.mkdir()
        (secret / "inner").mkdir()
        paths = [
            str(Path(mudpuppy_monitor.__file__).parent.parent),
            str(Path(mudpuppy_callback.__file__).parent),
        ]
        cmd = [sys.executable, "-c", MONITOR_SCRIPT, str(root), *paths]
        if os.geteuid() == 0:
            for p in (base, root, root / "a"):
                p.chmod(0o755)
            events.chmod(0o644)
            (root / "a" / "meta.json").chmod(0o644)
            secret.chmod(0o700)  # owned by root, so unreadable to nobody
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        else:
            secret.chmod(0o000)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=base
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
            with events.open("ab") as f:
                f.write(_line(2, step=2, values={"loss": 1.5}))
            _write_run(root, "b")
            for p in (root / "b", root / "b" / "meta.json", root / "b" / "events.jsonl"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "moved" in out, err
        assert err.count(f"skipping {secret}") == 1, err
    finally:
        if base.exists():
            for p in base.rglob("*"):
                if p.is_dir():
                    p.chmod(0o755)
            shutil.rmtree(base, ignore_errors=True)
