"""A started Monitor lists a run with a large backlog at once, as loading with its progress, reads
it in the background (in worker processes or in a thread of its own) and then replaces the
placeholder under a new generation; a run removed, truncated or replaced while it loads, a worker
that fails it, and a stop in the middle are handled."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor, entry, loading, prefetch
from mudpuppy_monitor.core.changes import Changes
from mudpuppy_monitor.core.discovery import discover
from mudpuppy_monitor.core.entry import Loading

T0 = 1_700_000_000.0
NOW = T0 + 10**6  # long after every run ended


def ev(seq: int, kind: str, **fields: object) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **fields})


def write_run(root: Path, name: str, steps: int, end: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(
        json.dumps({"name": name, "pid": 4242, "host": "h", "max_steps": steps})
    )
    lines = [ev(0, "start")]
    lines += [ev(i, "metrics", step=i, values={"loss": 1.0 / i}) for i in range(1, steps + 1)]
    if end:
        lines.append(ev(steps + 1, "end", step=steps, status="completed"))
    (d / "events.jsonl").write_bytes(b"".join(lines))
    return d / "events.jsonl"


@pytest.fixture
def small_backlogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds low enough for runs of a few hundred kB (what a test can write quickly)."""
    monkeypatch.setattr(loading, "LATER_MIN_BYTES", 100_000)
    monkeypatch.setattr(prefetch, "RUN_MIN_BYTES", 100_000)
    monkeypatch.setattr(prefetch, "PARALLEL_MIN_BYTES", 100_000)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 2)


def new_monitor(root: Path, parallel: bool) -> Monitor:
    return Monitor(
        root, clock=lambda: NOW, pid_alive=lambda pid: False, host="h", parallel=parallel
    )


class Gate:
    """Holds every install of a loaded run until opened (so a test sees the placeholder)."""

    def __init__(self, mon: Monitor) -> None:
        self.open = threading.Event()
        self.waiting = threading.Semaphore(0)
        install: Callable[..., None] = mon._install

        def gated(*args: Any) -> None:
            self.waiting.release()
            assert self.open.wait(60)
            install(*args)

        mon._install = gated  # type: ignore[method-assign]

    def reached(self, n: int = 1) -> None:
        """Wait until `n` loads finished reading and wait at the gate."""
        for _ in range(n):
            assert self.waiting.acquire(timeout=60)


def serial(root: Path) -> Monitor:
    mon = new_monitor(root, parallel=False)
    mon.refresh()
    return mon


def same_data(a: Monitor, b: Monitor, run_id: str) -> None:
    assert a.counts(run_id) == b.counts(run_id)
    assert a.series(run_id, points=10**6) == b.series(run_id, points=10**6)
    sa, sb = a.summary(run_id), b.summary(run_id)
    assert sa is not None and sb is not None
    assert (sa.status, sa.step, sa.loss, sa.loading) == (sb.status, sb.step, sb.loss, None)


async def changes_of(mon: Monitor) -> tuple[list[Changes], Callable[[], None]]:
    got: list[Changes] = []
    stream = mon.subscribe()

    async def pump() -> None:
        async for c in stream:
            got.append(c)

    task = asyncio.create_task(pump())
    return got, task.cancel


@pytest.mark.parametrize("parallel", [False, True], ids=["thread", "workers"])
def test_a_large_run_is_listed_at_once_then_loaded(
    tmp_path: Path, small_backlogs: None, parallel: bool
) -> None:
    big = write_run(tmp_path, "big", 8000)
    write_run(tmp_path, "small", 20)
    size = big.stat().st_size
    assert size > 100_000
    want = serial(tmp_path)

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel)
        gate = Gate(mon)
        await mon.start()
        got, stop_pump = await changes_of(mon)
        try:
            # listed before its backlog is read: meta only, no points, status unknown
            assert sorted(mon.run_ids()) == ["big", "small"]
            s = mon.summary("big")
            assert s is not None and s.name == "big" and s.status == "unknown"
            assert s.step is None and s.pid == 4242
            assert s.loading is not None and s.loading["total"] == size
            assert 0 <= s.loading["bytes"] <= size
            assert mon.loading() == {"big": s.loading}
            placeholder = mon.generation("big")
            assert mon.series("big") == {} and mon.series("big").generation == placeholder
            assert mon.counts("big") == {}
            detail = mon.detail("big")
            assert detail is not None and detail["summary"]["loading"] == s.loading
            # the small run was read by the first pass, as before
            same_data(mon, want, "small")
            # a pass meanwhile neither reads the run nor loses its placeholder
            await asyncio.to_thread(mon.refresh)
            gate.reached()
            assert mon.generation("big") == placeholder and mon.summary("big").loading  # type: ignore[union-attr]
            gate.open.set()
            assert await asyncio.to_thread(mon.wait_loaded, 60)
            await asyncio.sleep(0.05)
            same_data(mon, want, "big")
            assert mon.generation("big") != placeholder  # a front end refetches it
            assert any("big" in c.updated for c in got)
            assert mon.loading() == {}
        finally:
            stop_pump()
            await mon.stop()

    asyncio.run(main())


def test_refresh_without_start_reads_everything_as_before(
    tmp_path: Path, small_backlogs: None
) -> None:
    write_run(tmp_path, "big", 8000)
    mon = new_monitor(tmp_path, parallel=False)
    mon.refresh()
    s = mon.summary("big")
    assert s is not None and s.loading is None and s.step == 8000 and s.status == "completed"


def test_progress_is_bytes_read_of_the_file_size() -> None:
    class Tail:
        offset = 0

    class Source:
        events = Tail()

    p = Loading(total=1000)
    assert p.as_dict() == {"bytes": 0, "total": 1000}
    p.read = 300  # a worker's report
    assert p.as_dict() == {"bytes": 300, "total": 1000}
    src = Source()
    p.source = src  # type: ignore[assignment]
    src.events.offset = 700
    assert p.as_dict() == {"bytes": 700, "total": 1000}
    src.events.offset = 1200  # the file grew while it was read
    assert p.as_dict() == {"bytes": 1200, "total": 1200}
    # published when it moved, at most every PROGRESS_EVERY_S
    assert p.due(100.0) and not p.due(100.1)
    src.events.offset = 1300
    assert not p.due(100.2) and p.due(101.0) and not p.due(102.0)


def test_a_run_removed_while_it_loads_stays_removed(tmp_path: Path, small_backlogs: None) -> None:
    write_run(tmp_path, "big", 8000)

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel=False)
        gate = Gate(mon)
        await mon.start()
        try:
            gate.reached()
            for p in (tmp_path / "big").iterdir():
                p.unlink()
            (tmp_path / "big").rmdir()
            assert await asyncio.to_thread(mon.refresh) == {"big"}
            assert mon.run_ids() == [] and mon.loading() == {}
            gate.open.set()
            await asyncio.sleep(0.3)
            assert mon.run_ids() == []  # the finished load was dropped
        finally:
            gate.open.set()
            await mon.stop()

    asyncio.run(main())


def test_a_run_replaced_while_it_loads_is_read_again(tmp_path: Path, small_backlogs: None) -> None:
    events = write_run(tmp_path, "big", 8000)

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel=False)
        gate = Gate(mon)
        await mon.start()
        try:
            gate.reached()
            # truncated and rewritten shorter: what was read is stale
            events.write_bytes(
                b"".join(ev(i, "metrics", step=i, values={"loss": 2.0}) for i in range(1, 6))
            )
            gate.open.set()
            assert await asyncio.to_thread(mon.wait_loaded, 60)
            assert mon.counts("big")["loss"] == 5
            assert mon.series("big", ["loss"])["loss"]["y"] == [2.0] * 5
        finally:
            gate.open.set()
            await mon.stop()

    asyncio.run(main())


def test_a_run_its_worker_fails_is_read_in_process(
    tmp_path: Path, small_backlogs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path, "a", 8000)
    write_run(tmp_path, "b", 9000)
    monkeypatch.setattr(prefetch.Loader, "take", lambda self, f, real: None)  # every result lost
    want = serial(tmp_path)

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel=True)
        await mon.start()
        try:
            assert await asyncio.to_thread(mon.wait_loaded, 60)
            for run_id in ("a", "b"):
                same_data(mon, want, run_id)
        finally:
            await mon.stop()

    asyncio.run(main())


def test_workers_report_their_progress(tmp_path: Path, small_backlogs: None) -> None:
    sizes = {name: write_run(tmp_path, name, 8000).stat().st_size for name in ("a", "b")}
    found = sorted(discover(str(tmp_path)).values(), key=lambda f: f.id)
    loader = prefetch.Loader(found, str(tmp_path)).start()
    reports: list[tuple[str, int]] = []
    done: list[str] = []
    threads = loader.follow(
        on_done=lambda f: done.append(f.id), on_progress=lambda f, n: reports.append((f.id, n))
    )
    try:
        for t in threads:
            t.join(60)
        assert sorted(done) == ["a", "b"]
        assert all(0 <= n <= sizes[run_id] for run_id, n in reports)
        for f in found:
            got = loader.take(f, str(tmp_path))
            assert got is not None and got[0].train.count("loss") == 8000
    finally:
        loader.close()


def test_stop_while_loading_ends_the_workers(tmp_path: Path, small_backlogs: None) -> None:
    write_run(tmp_path, "a", 8000)
    write_run(tmp_path, "b", 9000)
    procs: list[Any] = []

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel=True)
        gate = Gate(mon)
        await mon.start()
        procs.extend(p for loader in mon._loaders for p in loader.procs)
        gate.reached()  # one run read; the other may still be decoding
        await mon.stop()
        gate.open.set()

    asyncio.run(main())
    assert procs
    for p in procs:
        p.wait(timeout=30)  # ended (terminated or done), not left behind


def test_a_started_monitor_without_a_large_run_loads_nothing_later(tmp_path: Path) -> None:
    write_run(tmp_path, "small", 20)

    async def main() -> None:
        mon = new_monitor(tmp_path, parallel=True)
        await mon.start()
        try:
            assert mon.loading() == {} and mon.summary("small").step == 20  # type: ignore[union-attr]
        finally:
            await mon.stop()

    asyncio.run(main())


def test_progress_is_published_by_the_passes_when_it_moves(
    tmp_path: Path, small_backlogs: None
) -> None:
    size = write_run(tmp_path, "big", 8000).stat().st_size
    mon = new_monitor(tmp_path, parallel=False)
    mon.background = True  # what start() sets, without its watch task
    gate = Gate(mon)
    # the read starts only after the first pass, so that pass publishes the progress at 0
    listed = threading.Event()
    read = mon._backlog.read

    def after_listed(f: Any) -> None:
        assert listed.wait(60)
        read(f)

    mon._backlog.read = after_listed
    try:
        assert mon.refresh() == {"big"}  # listed, loading
        listed.set()
        gate.reached()  # read to the end, held before it replaces its placeholder
        time.sleep(entry.PROGRESS_EVERY_S + 0.1)
        assert mon.refresh() == {"big"}  # it moved: a change for the stream
        assert mon.summary("big").loading == {"bytes": size, "total": size}  # type: ignore[union-attr]
        time.sleep(entry.PROGRESS_EVERY_S + 0.1)
        assert mon.refresh() == set()  # it did not move again
    finally:
        gate.open.set()
    assert mon.wait_loaded(60) and mon.counts("big")["loss"] == 8000
    mon._backlog.stop()
