"""Live behaviour through Monitor.start(): another process appends, the root appears late,
a thousand runs are watched, the changes stream reports them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Changes, Monitor

T0 = 1_700_000_000.0

APPENDER = """
import sys, time
sys.path.insert(0, sys.argv[3])
from mudpuppy_callback import encode_line
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "ab", buffering=0) as f:
    for i in range(n):
        f.write(encode_line({"v": 1, "seq": i, "t": time.time(), "kind": "metrics", "step": i,
                             "values": {"loss": 1.0 / (i + 1)}}))
        time.sleep(0.01)
"""


def _callback_dir() -> str:
    import mudpuppy_callback

    return os.path.dirname(mudpuppy_callback.__file__)


def line(seq: int, step: int, loss: float) -> bytes:
    return encode_line(
        {
            "v": 1,
            "seq": seq,
            "t": T0 + seq,
            "kind": "metrics",
            "step": step,
            "values": {"loss": loss},
        }
    )


async def _until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def _next_with(sub, run_id: str, timeout: float = 10.0) -> Changes:  # type: ignore[no-untyped-def]
    async def wait() -> Changes:
        async for ch in sub:
            if run_id in ch.ids():
                return ch
        raise AssertionError("stream ended")

    return await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("poll", [False, True])
def test_lines_from_another_process_arrive(tmp_path: Path, poll: bool) -> None:
    (tmp_path / "job").mkdir()
    events = tmp_path / "job" / "events.jsonl"
    events.write_bytes(b"")

    async def main() -> None:
        mon = Monitor(tmp_path, poll=poll, scan_interval_s=5.0)  # the timer alone would be too slow
        await mon.start()
        sub = mon.subscribe()
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(events), "60", _callback_dir()]
        )
        try:
            ch = await _next_with(sub, "job")
            assert "job" in ch.updated
            await _until(lambda: mon.counts("job").get("loss") == 60)
        finally:
            proc.wait(timeout=30)
            await mon.stop()
        y = mon.series("job", ["loss"], points=100)["loss"]["y"]
        assert y == [1.0 / (i + 1) for i in range(60)]
        assert mon.summary("job").bad_lines == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_line_split_across_two_writes_appears_once_whole(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    path = tmp_path / "r" / "events.jsonl"
    whole = line(0, 0, 0.5) + line(1, 1, 0.25)
    cut = len(line(0, 0, 0.5)) + 17
    path.write_bytes(whole[:cut])
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.series("r", ["loss"])["loss"]["y"] == [0.5]
    gen, grown = mon.points_since("r", {"loss": 1})
    assert grown == {}
    with open(path, "ab") as f:
        f.write(whole[cut:])
    assert mon.refresh() == {"r"}
    gen2, grown = mon.points_since("r", {"loss": 1})
    assert gen2 == gen
    assert grown["loss"] == {"i0": 1, "step": [1], "t": [T0 + 1], "y": [0.25]}
    assert mon.summary("r").bad_lines == 0  # type: ignore[union-attr]


def test_attach_to_a_half_written_run_sees_exactly_the_complete_lines(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    path = tmp_path / "r" / "events.jsonl"
    body = b"".join(line(i, i, float(i)) for i in range(1000))
    nxt = line(1000, 1000, 1000.0)
    path.write_bytes(body + nxt[:-20])
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.counts("r")["loss"] == 1000
    assert mon.summary("r").step == 999  # type: ignore[union-attr]
    with open(path, "ab") as f:
        f.write(nxt[-20:])
    mon.refresh()
    assert mon.counts("r")["loss"] == 1001
    assert mon.series("r", ["loss"], start=1000)["loss"]["y"] == [1000.0]


def test_root_that_appears_later_is_waited_for(tmp_path: Path) -> None:
    root = tmp_path / "later" / "runs"

    async def main() -> None:
        mon = Monitor(root, scan_interval_s=0.05)
        await mon.start()
        sub = mon.subscribe()
        assert mon.summaries() == []
        await asyncio.sleep(0.1)
        (root / "a").mkdir(parents=True)
        (root / "a" / "events.jsonl").write_bytes(line(0, 0, 1.0))
        ch = await _next_with(sub, "a")
        assert ch.added == {"a"}
        # the root deleted and made again: the new one is watched
        (root / "a" / "events.jsonl").unlink()
        (root / "a").rmdir()
        root.rmdir()
        ch = await _next_with(sub, "a")
        assert "a" in ch.removed
        (root / "b").mkdir(parents=True)
        (root / "b" / "events.jsonl").write_bytes(line(0, 0, 2.0))
        await _next_with(sub, "b")
        with open(root / "b" / "events.jsonl", "ab") as f:
            f.write(line(1, 1, 3.0))
        await _until(lambda: mon.counts("b").get("loss") == 2)
        await mon.stop()
        async for _ in sub:  # the stream ends after stop()
            pass

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_thousand_runs_load_and_stay_watched(tmp_path: Path) -> None:
    for i in range(1000):
        d = tmp_path / f"sweep-{i // 100}" / f"run-{i:04d}"
        d.mkdir(parents=True)
        (d / "events.jsonl").write_bytes(b"".join(line(s, s, 1.0 + i) for s in range(10)))

    async def main() -> None:
        mon = Monitor(tmp_path, scan_interval_s=0.5)
        t0 = time.perf_counter()
        await mon.start()
        attach_s = time.perf_counter() - t0
        assert len(mon.summaries()) == 1000
        assert mon.counts("sweep-7/run-0777") == {"loss": 10, "steps_per_s": 9}
        sub = mon.subscribe()
        for run_id in ("sweep-0/run-0000", "sweep-9/run-0999", "sweep-5/run-0500"):
            with open(tmp_path / run_id / "events.jsonl", "ab") as f:
                f.write(line(10, 10, 0.5))
            ch = await _next_with(sub, run_id)
            assert run_id in ch.updated
            assert mon.counts(run_id)["loss"] == 11
        # a new run beside them is picked up too
        (tmp_path / "sweep-0" / "run-new").mkdir()
        (tmp_path / "sweep-0" / "run-new" / "events.jsonl").write_bytes(line(0, 0, 1.0))
        ch = await _next_with(sub, "sweep-0/run-new")
        assert ch.added == {"sweep-0/run-new"}
        await mon.stop()
        assert attach_s < 60  # generous: a loaded 2-core box; the point is that it finishes

    asyncio.run(asyncio.wait_for(main(), 90))


def test_slow_subscriber_gets_merged_changes() -> None:
    a = Changes(added=frozenset({"x"}))
    b = Changes(updated=frozenset({"x", "y"}), removed=frozenset({"z"}))
    c = Changes(added=frozenset({"z"}))
    merged = a.merge(b).merge(c)
    assert merged == Changes(frozenset({"x", "z"}), frozenset({"y"}), frozenset())


def test_backlog_loaded_in_worker_processes_matches_in_process(tmp_path: Path) -> None:
    from mudpuppy_monitor.core import prefetch
    from mudpuppy_monitor.core.discovery import discover

    for r in range(3):
        d = tmp_path / f"r{r}"
        d.mkdir()
        body = b"".join(line(i, i, 1.0 / (i + 1 + r)) for i in range(3000))
        (d / "events.jsonl").write_bytes(body + line(3000, 3000, 9.0)[:-5])  # a cut last line
    found = discover(str(tmp_path))
    loaded = prefetch.load_all(sorted(found.values(), key=lambda f: f.id), str(tmp_path))
    assert set(loaded) == {"r0", "r1", "r2"}
    serial = Monitor(tmp_path, parallel=False)
    serial.refresh()
    for run_id, (state, source) in loaded.items():
        assert state.train.count("loss") == 3000 == serial.counts(run_id)["loss"]
        assert (
            state.train.series("loss")[2].tolist()
            == serial.series(run_id, ["loss"], points=10**6)["loss"]["y"]
        )
        assert source.events.partial == line(3000, 3000, 9.0)[:-5]
    # and through the Monitor, with the thresholds lowered so this small backlog qualifies
    mp = pytest.MonkeyPatch()
    mp.setattr(prefetch, "RUN_MIN_BYTES", 1)
    mp.setattr(prefetch, "PARALLEL_MIN_BYTES", 1)
    mp.setattr(prefetch.os, "cpu_count", lambda: 2)
    try:
        mon = Monitor(tmp_path)
        assert mon.refresh() == {"r0", "r1", "r2"}
    finally:
        mp.undo()
    assert len({mon.generation(r) for r in ("r0", "r1", "r2")}) == 3
    for r in ("r0", "r1", "r2"):
        assert mon.counts(r) == serial.counts(r)
    with open(tmp_path / "r1" / "events.jsonl", "ab") as f:
        f.write(line(3000, 3000, 9.0)[-5:])  # the rest of the cut line: tailing goes on
    assert mon.refresh() == {"r1"}
    assert mon.series("r1", ["loss"], start=3000)["loss"]["y"] == [9.0]
