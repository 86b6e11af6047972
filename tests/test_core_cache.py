"""The parse cache: a run attached again resumes from the state saved outside the root, reads only
what was appended, and never serves stale data (appended, truncated, replaced, rewritten in place
at the same size, regrown); entries are replaced atomically, damaged or foreign ones are refused."""

from __future__ import annotations

import os
import pickle
import threading
import zlib
from pathlib import Path

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor, parsecache, prefetch, snapshot
from mudpuppy_monitor.core.discovery import discover
from mudpuppy_monitor.core.parsecache import CacheUnusable, ParseCache

T0 = 1_700_000_000.0


def ev(seq: int, kind: str, **fields: object) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **fields})


def body(lo: int, hi: int, scale: float = 1.0) -> bytes:
    """Lines lo..hi-1 of a run with every kind of line: metrics (NaN now and then), eval, lora,
    progress, checkpoint, a bad line."""
    out = []
    for i in range(lo, hi):
        loss = float("nan") if i % 97 == 13 else scale / (i + 1)
        out.append(
            ev(
                i,
                "metrics",
                step=i,
                values={"loss": loss, "learning_rate": 1e-4, "tokens_seen": 64.0 * i},
            )
        )
        if i % 50 == 0:
            out.append(ev(i, "eval", step=i, values={"eval_loss": scale * 2 / (i + 1)}))
            out.append(ev(i, "lora", step=i, layers={"q": {"A": 1.0 * i, "B": float("inf")}}))
        if i % 10 == 0:
            out.append(ev(i, "progress", step=i))
        if i % 500 == 7:
            out.append(b"{not json\n")
        if i % 700 == 3:
            out.append(ev(i, "checkpoint", step=i, path=f"ckpt-{i}"))
    return b"".join(out)


def write_run(root: Path, name: str, data: bytes) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "events.jsonl").write_bytes(ev(0, "start") + data)
    return d / "events.jsonl"


def monitor(root: Path, cache: ParseCache | None, parallel: bool = False) -> Monitor:
    mon = Monitor(
        root, clock=lambda: T0 + 10**6, pid_alive=lambda pid: False, host="h",
        parallel=parallel, cache=cache,
    )  # fmt: skip
    mon.refresh()
    return mon


def picture(mon: Monitor, run_id: str) -> dict:
    """Everything a client can ask about a run, generations left out."""
    detail = mon.detail(run_id)
    assert detail is not None
    detail.pop("generation")
    detail["summary"].pop("generation")
    # markers come in the order the reads found them (a resumed run reads in other slices)
    detail["markers"] = sorted(detail["markers"], key=repr)
    names = detail["series"]
    return {
        "detail": detail,
        "series": repr(mon.series(run_id, names, points=10**6)),
        "time": repr(mon.series(run_id, names, x="time", points=10**6)),
        "lora": repr(mon.lora(run_id, points=10**6)),
        "export": "".join(mon.export(run_id)),
    }


@pytest.fixture
def small_min(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache runs of any size (the default keeps only runs of 1 MiB and more)."""
    from mudpuppy_monitor.core import monitor as monitor_mod

    monkeypatch.setattr(parsecache, "MIN_BYTES", 1)
    monkeypatch.setattr(monitor_mod, "MIN_CACHED", 1)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes handed to the line decoder, per call."""
    from mudpuppy_monitor.core.sources import native

    seen: list[int] = []
    real = native.decode_block

    def counting(block: bytes, batch: object) -> None:
        seen.append(len(block))
        real(block, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(native, "decode_block", counting)
    return seen


@pytest.fixture
def cache(tmp_path: Path) -> ParseCache:
    (tmp_path / "runs").mkdir()
    return ParseCache.open(str(tmp_path / "cache"), str(tmp_path / "runs"))


def _entry(cache: ParseCache, events: Path) -> Path:
    st = os.stat(events)
    return Path(cache.entry_path(st.st_dev, st.st_ino))


def cached_run(root: Path, cache: ParseCache, data: bytes) -> tuple[Path, Path]:
    """(events file, cache entry) of run `a` holding `data`, attached once so the cache has it."""
    events = write_run(root, "a", data)
    monitor(root, cache)
    return events, _entry(cache, events)


def test_a_second_attach_resumes_from_the_cache_without_decoding(
    tmp_path: Path, cache: ParseCache, small_min: None, decoded: list[int]
) -> None:
    root = tmp_path / "runs"
    events = write_run(root, "a", body(1, 3000) + ev(3000, "metrics", step=3000)[:-9])
    first = monitor(root, cache)
    assert _entry(cache, events).exists()
    assert not any(p.name != "a" for p in root.iterdir())  # nothing written in the root
    decoded.clear()
    again = monitor(root, cache)
    assert decoded == []  # every byte came from the cache
    plain = monitor(root, None)
    assert picture(again, "a") == picture(first, "a") == picture(plain, "a")
    assert again.detail("a")["bad_lines"] == plain.detail("a")["bad_lines"] > 0  # type: ignore[index]


def test_an_appended_file_reads_only_its_new_tail(
    tmp_path: Path, cache: ParseCache, small_min: None, decoded: list[int]
) -> None:
    root = tmp_path / "runs"
    # (a value in the trend: spike markers depend on where reads cut the file, cache or not)
    cut = ev(3000, "metrics", step=3000, values={"loss": 1 / 3001})
    events = write_run(root, "a", body(1, 3000) + cut[:-7])  # a partial last line
    monitor(root, cache)
    with open(events, "ab") as f:
        f.write(cut[-7:] + body(3001, 3400))
    decoded.clear()
    again = monitor(root, cache)
    assert 0 < sum(decoded) < len(cut) + len(body(3001, 3400)) + 10
    assert picture(again, "a") == picture(monitor(root, None), "a")
    # the entry now covers the appended part too
    decoded.clear()
    assert picture(monitor(root, cache), "a") == picture(again, "a") and decoded == []


@pytest.mark.parametrize("how", ["truncated", "replaced", "rewritten", "regrown", "emptied"])
def test_a_changed_file_is_never_served_from_the_cache(
    tmp_path: Path, cache: ParseCache, small_min: None, how: str
) -> None:
    root = tmp_path / "runs"
    original = ev(0, "start") + body(1, 2000)
    events = write_run(root, "a", body(1, 2000))
    monitor(root, cache)
    st = os.stat(events)
    if how == "truncated":
        os.truncate(events, len(original) // 2)
    elif how == "replaced":  # a new file (new inode) of the same size
        tmp = events.with_suffix(".new")
        tmp.write_bytes(ev(0, "start") + body(1, 2000, scale=3.0))
        os.replace(tmp, events)
    elif how == "rewritten":  # same inode, same size, other values, mtime put back
        other = original.replace(b'"learning_rate":0.0001', b'"learning_rate":0.0003')
        assert len(other) == len(original) and other != original
        with open(events, "r+b") as f:
            f.write(other)
        os.utime(events, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "regrown":  # truncated, then written again longer than before
        with open(events, "r+b") as f:
            f.truncate(0)
            f.write(ev(0, "start") + body(1, 2500, scale=3.0))
    else:
        os.truncate(events, 0)
    after = monitor(root, cache)
    assert picture(after, "a") == picture(monitor(root, None), "a")


def test_entries_are_replaced_atomically_while_others_read(
    tmp_path: Path, cache: ParseCache, small_min: None
) -> None:
    root = tmp_path / "runs"
    events = write_run(root, "a", body(1, 2000))
    want = picture(monitor(root, None), "a")["series"]
    stop = threading.Event()
    errors: list[BaseException] = []

    found = discover(str(root))["a"]
    state, source = prefetch.load_run(found, str(root), cache)

    def writer() -> None:  # another daemon storing the same run again and again
        try:
            while not stop.is_set():
                assert cache.store(state, source.events, source.meta_key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    assert cache.store(state, source.events, source.meta_key)
    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = 0
        for _ in range(40):
            got = cache.lookup(str(events), str(root))
            assert got is not None  # always a whole entry, the old one or the new one
            seen += 1
            assert got.state.train.count("loss") == 1999
        mon = monitor(root, cache)
    finally:
        stop.set()
        t.join()
    assert not errors and seen > 0
    assert picture(mon, "a")["series"] == want
    assert not [p for p in Path(cache.dir).iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_or_foreign_entry_is_not_used(
    tmp_path: Path, cache: ParseCache, small_min: None
) -> None:
    root = tmp_path / "runs"
    events, entry = cached_run(root, cache, body(1, 1000))
    good = entry.read_bytes()
    want = picture(monitor(root, None), "a")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    header, meta = snapshot.read_header(open(entry, "rb"))  # noqa: SIM115
    evil_body = pickle.dumps((Evil(), {}, None), protocol=5)
    import orjson

    head = dict(meta)
    body_at = head.pop("_body_at")
    # a whole, consistent entry (its crc32 right) whose pickle names another global
    head.update(
        pickle=len(evil_body), buffers=[], data_bytes=len(evil_body), body_crc=zlib.crc32(evil_body)
    )
    raw = orjson.dumps(head)
    middle = body_at + (len(good) - body_at) // 2
    damaged = [
        good[: len(good) // 2],  # cut short
        good + b"\0" * 8,  # grown
        b"garbage" * 100,
        good[:40] + b"\xff" * 40 + good[80:],  # header damaged
        # the columns damaged, same length: the pickle still loads, the crc32 does not match
        good[:middle] + bytes(b ^ 0x5A for b in good[middle : middle + 64]) + good[middle + 64 :],
        snapshot.MAGIC + len(raw).to_bytes(4, "little") + raw + evil_body,  # a foreign pickle
    ]
    for data in damaged:
        entry.write_bytes(data)
        assert picture(monitor(root, cache), "a") == want
    assert not marker.exists()


def test_the_cache_directory_must_be_private_and_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    with pytest.raises(CacheUnusable, match="inside the runs root"):
        ParseCache.open(str(root / ".cache"), str(root))
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(CacheUnusable, match="not private"):
        ParseCache.open(str(shared), str(root))
    made = ParseCache.open(str(tmp_path / "new" / "cache"), str(root))
    assert os.stat(made.dir).st_mode & 0o777 == 0o700


def test_default_directory_follows_xdg_cache_home() -> None:
    assert parsecache.default_dir({"XDG_CACHE_HOME": "/x/c"}) == "/x/c/mudpuppy-monitor"
    assert parsecache.default_dir({}).endswith(os.path.join(".cache", "mudpuppy-monitor"))


def test_old_entries_are_pruned(tmp_path: Path, cache: ParseCache, small_min: None) -> None:
    root = tmp_path / "runs"
    events, entry = cached_run(root, cache, body(1, 500))
    old = parsecache.MAX_AGE_S + 10
    os.utime(entry, (os.stat(entry).st_atime - old, os.stat(entry).st_mtime - old))
    assert cache.prune() == 1 and not entry.exists()


def test_worker_processes_write_the_cache_and_a_second_attach_uses_it(
    tmp_path: Path, cache: ParseCache, small_min: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    for r in range(3):  # above parsecache.MIN_BYTES: the workers apply the real threshold
        assert write_run(root, f"r{r}", body(1, 7500, scale=1.0 + r)).stat().st_size > 1 << 20
    monkeypatch.setattr(prefetch, "RUN_MIN_BYTES", 1)
    monkeypatch.setattr(prefetch, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 2)
    first = monitor(root, cache, parallel=True)
    assert len(list(Path(cache.dir).glob("*.snap"))) == 3
    plain = monitor(root, None)
    # started early, as `serve` does, from the cache this time: nothing left to decode
    loader = prefetch.start_early(str(root), cache)
    assert loader is None  # every run is covered by the cache
    again = monitor(root, cache, parallel=True)
    for r in ("r0", "r1", "r2"):
        assert picture(again, r) == picture(first, r) == picture(plain, r)
    found = discover(str(root))
    assert all(prefetch.backlog_bytes(f, cache) == 0 for f in found.values())


def test_an_entry_of_other_code_is_not_used(
    tmp_path: Path, cache: ParseCache, small_min: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot whose RunState lacks an attribute this code has (same version number, other
    code) is refused when read, not discovered later by a query."""
    from mudpuppy_monitor.core.run import RunState

    root = tmp_path / "runs"
    events = write_run(root, "a", body(1, 1000))
    monitor(root, cache)
    real_init = RunState.__init__

    def with_more(self: RunState, *args: object) -> None:
        real_init(self, *args)  # type: ignore[arg-type]
        self.added_later = 0  # type: ignore[attr-defined]

    monkeypatch.setattr(RunState, "__init__", with_more)
    assert cache.lookup(str(events), str(root)) is None
    assert monitor(root, cache).counts("a")["loss"] == 999


def test_what_was_read_while_serving_is_cached_when_the_daemon_stops(
    tmp_path: Path, cache: ParseCache, small_min: None, decoded: list[int]
) -> None:
    import asyncio

    root = tmp_path / "runs"
    events = write_run(root, "a", body(1, 1000))
    mon = Monitor(root, clock=lambda: T0 + 10**6, pid_alive=lambda pid: False, host="h",
                  parallel=False, cache=cache, poll=True, scan_interval_s=0.05)  # fmt: skip

    async def serve_a_while() -> None:
        await mon.start()
        with open(events, "ab") as f:
            f.write(body(1000, 1600))
        for _ in range(200):
            if mon.counts("a").get("loss") == 1599:
                break
            await asyncio.sleep(0.05)
        await mon.stop()

    asyncio.run(serve_a_while())
    assert mon.counts("a")["loss"] == 1599
    assert mon.store_grown() == 0  # stored at stop already: nothing new since
    decoded.clear()
    again = monitor(root, cache)
    assert decoded == []  # the growth came from the cache too
    assert picture(again, "a") == picture(monitor(root, None), "a")


KILLED_WRITER = """
import sys, time
from mudpuppy_monitor.core import parsecache, prefetch, snapshot
from mudpuppy_monitor.core.discovery import discover

root, cache_dir = sys.argv[1], sys.argv[2]
parsecache.MIN_BYTES = 1
cache = parsecache.ParseCache(cache_dir)
state, source = prefetch.load_run(discover(root)["a"], root, cache)


class Stalling(list):
    # the pieces of an entry: half of them written, then the process waits to be killed
    def __iter__(self):
        for i, piece in enumerate(list.__iter__(self)):
            if i == len(self) // 2:
                print("half", flush=True)
                time.sleep(600)
            yield piece


encode = snapshot.encode
snapshot.encode = lambda *args: Stalling(encode(*args))
cache.store(state, source.events, source.meta_key)
"""


def test_a_writer_killed_mid_entry_leaves_the_old_entry_whole(
    tmp_path: Path, cache: ParseCache, small_min: None
) -> None:
    """SIGKILL while an entry is being written: the entry is the previous one, whole, and still
    right for the file; the half-written temporary file is never read and is pruned later."""
    import signal
    import subprocess
    import sys

    root = tmp_path / "runs"
    events, entry = cached_run(root, cache, body(1, 1500))  # the entry of the first 1,500 lines
    before = entry.read_bytes()
    with open(events, "ab") as f:
        f.write(body(1500, 3000))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root), cache.base],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"half\n"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert entry.read_bytes() == before  # not replaced by half an entry
    leftovers = [p for p in Path(cache.dir).iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    # the old entry resumes the run, the appended half is read from the file: the same picture
    assert picture(monitor(root, cache), "a") == picture(monitor(root, None), "a")
    assert cache.prune() == 0  # a temporary file may belong to a writer still at work...
    later = ParseCache(cache.base, clock=lambda: parsecache.time.time() + 2 * 3600)
    assert later.prune() == 1  # ...but not for hours
    assert not [p for p in Path(cache.dir).iterdir() if p.name.endswith(".tmp")]


def test_samples_skipped_kinds_resumed_attempts_and_output_survive_the_cache(
    tmp_path: Path,
    cache: ParseCache,
    small_min: None,
    decoded: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run with generated samples, lines of a kind this reader does not know, a resumed attempt
    and an output.log reads the same fresh, from the cache and from worker processes; the output
    is read again from its file (its lines once, not twice)."""
    root = tmp_path / "runs"
    more = [
        ev(3001, "samples", step=2999, took_s=0.5, items=[{"prompt": "p", "completion": "c"}]),
        ev(3002, "telemetry_v9", step=2999),  # a kind from a later writer: skipped, counted
        ev(3003, "start", resumed_from=2000),
        *(ev(3004 + i, "metrics", step=2001 + i, values={"loss": 0.5}) for i in range(50)),
        ev(3100, "samples", step=2050, took_s=None, items=[{"prompt": "p", "completion": "d"}]),
    ]
    for name in ("a", "b"):  # two: workers take a backlog of more than one run
        write_run(root, name, body(1, 3000) + b"".join(more))
        (root / name / "output.log").write_text("".join(f"line {i}\n" for i in range(30)))

    def seen(mon: Monitor, run: str = "a") -> dict:
        got = picture(mon, run)
        got["samples"] = mon.samples(run, limit=10)
        got["samples"].pop("generation")
        got["log"] = mon.log_tail(run, 100)
        got["log"].pop("generation")
        return got

    fresh = monitor(root, None)
    plain, plain_b = seen(fresh), seen(fresh, "b")
    assert plain["samples"]["count"] == 2
    assert plain["detail"]["skipped_kinds"] == {"telemetry_v9": 1}
    assert plain["detail"]["superseded_points"] > 0
    assert plain["log"]["lines"] == [f"line {i}" for i in range(30)]
    assert seen(monitor(root, cache)) == plain  # read, then stored in the cache
    decoded.clear()
    assert seen(monitor(root, cache)) == plain  # resumed from the cache
    assert decoded == []  # nothing decoded again: the entry was usable
    monkeypatch.setattr(prefetch, "RUN_MIN_BYTES", 1)
    monkeypatch.setattr(prefetch, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 2)
    workers = monitor(root, None, parallel=True)
    assert seen(workers) == plain and seen(workers, "b") == plain_b  # handed back by workers
    assert decoded == []  # decoded in the workers, not read again here


def test_entries_read_ahead_are_what_a_lookup_would_decode(
    tmp_path: Path, cache: ParseCache, small_min: None, decoded: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    root = tmp_path / "runs"
    write_run(root, "a", body(1, 2000))
    write_run(root, "b", body(1, 1500, scale=2.0))
    first = monitor(root, cache)
    decoded.clear()
    reads: list[tuple[str, str]] = []
    real = snapshot.decode

    def reading(path: str):  # noqa: ANN202
        reads.append((path, threading.current_thread().name))
        return real(path)

    monkeypatch.setattr(snapshot, "decode", reading)
    # as `serve` starts: the runs the cache holds are read ahead, then the first pass looks up
    assert prefetch.start_early(str(root), cache) is None  # nothing left for workers
    again = monitor(root, cache)
    # each entry decoded once, by the threads that read ahead, none by the pass itself
    assert sorted(reads) == sorted(
        (str(_entry(cache, root / r / "events.jsonl")), "mudpuppy-cache-read") for r in "ab"
    )
    assert parsecache._early == {}  # each early read taken once
    assert decoded == []  # every byte came from the entries read ahead
    for r in "ab":
        assert picture(again, r) == picture(first, r)


def test_an_entry_replaced_after_its_early_read_is_decoded_again(
    tmp_path: Path, cache: ParseCache, small_min: None
) -> None:
    root = tmp_path / "runs"
    events, cached = cached_run(root, cache, body(1, 2000))
    entry = str(cached)
    path = os.path.realpath(events)  # as the Monitor names it
    cache.read_ahead([path])
    early = parsecache._early[path]
    assert early.done.wait(10) and early.got is not None and early.path == entry
    with open(events, "ab") as f:  # the run grows; another daemon stores a newer entry
        f.write(body(2000, 2600))
    parsecache.forget_early()
    monitor(root, cache)
    assert parsecache._take_early(path, entry) is None  # nothing read ahead: decode it now
    parsecache._early[path] = early  # the read of the entry as it was before
    assert parsecache._take_early(path, entry) is None and path not in parsecache._early
    # so the first pass uses the newer entry: everything, and nothing decoded twice
    parsecache._early[path] = early
    again = monitor(root, cache)
    assert picture(again, "a") == picture(monitor(root, None), "a")
    assert again.counts("a")["loss"] == 2599
