"""Loading a large backlog on several cores: each worker process reads whole runs.

Attaching to runs that already hold millions of lines is bound by decoding (orjson plus a little
Python per line, under one GIL). When the new runs found by one discovery pass hold enough bytes
to decode, each is read completely in a worker process, exactly as the Monitor would read it (the
same source object polled until caught up, resumed from the parse cache when it has the run).

A worker hands each finished run back as a snapshot file (see snapshot.py: the numpy columns as
raw buffers after a small pickle of the rest) and one line on its stdout naming the file; the
daemon reads the file into one buffer whose views become the columns. With a parse cache the
snapshot is the cache entry itself, so it is written once. Results are taken as each run
finishes, and a `Loader` can be started before the daemon has imported its web server, so
decoding overlaps that start. While it reads a run, a worker also writes how far it got (a line
`{"id", "read"}` about every PROGRESS_S), which the daemon shows as the run's loading progress.
Anything that goes wrong falls back to reading in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from mudpuppy_callback import EVENTS_FILE

from mudpuppy_monitor.core.discovery import Found
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.sources import RunSource, open_source, source_kind
from mudpuppy_monitor.core.sources.native import KIND as NATIVE

if TYPE_CHECKING:
    from mudpuppy_monitor.core.parsecache import ParseCache
    from mudpuppy_monitor.core.sources.native import NativeSource

PARALLEL_MIN_BYTES = 16 << 20  # total backlog below which a pool costs more than it saves
RUN_MIN_BYTES = 1 << 20  # smaller runs are read in-process while the workers work
MAX_WORKERS = 8
PROGRESS_S = 0.25  # how often a worker reports the bytes read of the run it is loading


def backlog_bytes(f: Found, cache: ParseCache | None = None) -> int:
    """Bytes of a run still to decode (less what the parse cache already holds of it)."""
    size = source_kind(f.source).backlog_bytes(f.path)
    if size and cache is not None and f.source == NATIVE:
        size -= cache.covered(os.path.join(f.path, EVENTS_FILE))
    return size


def open_run(
    f: Found, root: str | None, cache: ParseCache | None = None, resume: bool = True
) -> tuple[RunState, RunSource, int]:
    """(state, source, offset restored from the cache) of a run about to be read; with a cache,
    the events tail keeps the crc the cache checks files against."""
    source = open_source(f.source, f.path, root)
    if cache is not None and f.source == NATIVE:
        native = cast("NativeSource", source)
        got = cache.lookup(native.events.path, root) if resume else None
        if got is not None:
            got.state.id, got.state.path, got.state.source = f.id, f.path, f.source
            restore(native, got.tail, got.meta_key)
            return got.state, source, got.offset
        native.events.track()
    return RunState(f.id, f.path, f.source, 0), source, 0


def restore(source: NativeSource, tail: dict[str, Any], meta_key: Any) -> None:
    """Put a native reader back where a snapshot says it was."""
    for k, v in tail.items():
        setattr(source.events, k, v)
    source.meta_key = meta_key


def store_grown(
    cache: ParseCache, state: RunState, source: RunSource, since: int, at_least: int
) -> int | None:
    """Keep a native run in the parse cache when it holds `at_least` bytes more than the `since`
    the cache already has; the offset stored, else None (another kind of run, nothing new)."""
    tail = getattr(source, "events", None)
    if tail is None or tail.crc is None or tail.offset - since < at_least:
        return None
    if cache.store(state, tail, cast("NativeSource", source).meta_key) is None:
        return None
    return int(tail.offset)


def bytes_read(source: RunSource) -> int:
    """How far a reader got in its events file (0 for a source without one)."""
    tail = getattr(source, "events", None)
    return int(getattr(tail, "offset", 0) or 0)


def load_run(
    f: Found,
    root: str | None,
    cache: ParseCache | None = None,
    on_source: Callable[[RunSource], None] | None = None,
) -> tuple[RunState, RunSource]:
    """Read one run completely (in a worker process); generation is set by the caller.
    `on_source` is told each reader as it starts (its position is the progress)."""
    state, source, _ = open_run(f, root, cache)
    lock = threading.Lock()
    while True:
        if on_source is not None:
            on_source(source)
        changed, reset = source.poll(state, lock)
        if not reset:
            break
        state, source, _ = open_run(f, root, cache, resume=False)
    for table in (state.train, state.eval, state.progress):
        table.compact()
    return state, source


def plan(
    found: Iterable[Found], cache: ParseCache | None = None, single: bool = False
) -> list[Found]:
    """The runs worth sending to worker processes (empty: read everything in-process). Only
    native runs (a snapshot holds a native reader's position). `single`: one large run is worth
    a worker too (when the daemon answers while it loads, decoding there keeps its own process
    free); else at least two are needed, since the caller would only wait."""
    big = [
        (f, n)
        for f in found
        if f.source == NATIVE and (n := backlog_bytes(f, cache)) >= RUN_MIN_BYTES
    ]
    if len(big) < (1 if single else 2) or (os.cpu_count() or 1) < 2:
        return []
    if sum(n for _, n in big) < PARALLEL_MIN_BYTES:
        return []
    big.sort(key=lambda fn: -fn[1])  # largest first: the pool finishes together
    return [f for f, _ in big]


class Loader:
    """Worker processes loading runs, one per core; results are taken as runs finish.

    Workers are plain `python -m mudpuppy_monitor.core.prefetch` processes rather than a
    multiprocessing pool: spawn would re-import the caller's `__main__` (a user script without
    a main guard would run again in every worker), and fork would copy a process with threads.
    """

    def __init__(self, runs: list[Found], root: str | None, cache_dir: str | None = None) -> None:
        self.runs = {f.id: f for f in runs}
        self.root = root
        self.cache_dir = cache_dir
        self.out_dir = tempfile.mkdtemp(prefix="mudpuppy-load-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.done: dict[str, str] = {}  # run id -> snapshot file
        self.shares: list[list[Found]] = []  # the runs of each process
        self.unstarted: list[Found] = []  # runs whose worker could not be started
        self.failed = False
        self.closed = False

    def start(self) -> Loader:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        width = max(1, min(os.cpu_count() or 1, len(self.runs), MAX_WORKERS))
        shares: list[list[Found]] = [[] for _ in range(width)]
        for i, f in enumerate(self.runs.values()):  # largest first, dealt round-robin
            shares[i % width].append(f)
        try:
            for share in shares:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "mudpuppy_monitor.core.prefetch"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
                self.procs.append(proc)
                self.shares.append(share)
                job = {
                    "runs": [[f.id, f.path, f.source, list(f.dir_key)] for f in share],
                    "root": self.root,
                    "cache": self.cache_dir,
                    "out": self.out_dir,
                }
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
        except OSError:
            self.failed = True
        started = {f.id for share in self.shares for f in share}
        self.unstarted = [f for f in self.runs.values() if f.id not in started]
        return self

    def follow(
        self,
        on_done: Callable[[Found], None] | None = None,
        on_progress: Callable[[Found, int], None] | None = None,
        on_lost: Callable[[Found], None] | None = None,
    ) -> list[threading.Thread]:
        """Read the workers' lines in threads of their own (started here): `on_done` is called
        as each run finishes (take() it then), `on_progress` with the bytes a worker has read,
        `on_lost` for each run its worker ended without (read it in-process)."""
        threads = [
            threading.Thread(
                target=self._read,
                args=(proc, share, on_done, on_progress, on_lost),
                name="mudpuppy-loader",
                daemon=True,
            )
            for proc, share in zip(self.procs, self.shares, strict=True)
        ]
        for t in threads:
            t.start()
        if on_lost is not None:
            for f in self.unstarted:
                on_lost(f)
        return threads

    def collect(self) -> dict[str, str]:
        """Wait for every run; run id -> snapshot file of those that loaded."""
        for t in self.follow():
            t.join()
        return dict(self.done)

    def _read(
        self,
        proc: subprocess.Popen[bytes],
        share: list[Found],
        on_done: Callable[[Found], None] | None,
        on_progress: Callable[[Found, int], None] | None,
        on_lost: Callable[[Found], None] | None,
    ) -> None:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:  # the worker may go on caching after its last line
                try:
                    got = json.loads(raw)
                    f = self.runs[str(got["id"])]
                    if "file" in got:
                        self.done[f.id] = str(got["file"])
                        if on_done is not None:
                            on_done(f)
                    elif on_progress is not None:
                        on_progress(f, int(got["read"]))
                except (ValueError, KeyError, TypeError):
                    continue
        except (OSError, ValueError):
            pass
        finally:
            proc.stdout.close()
        if on_lost is not None and not self.closed:
            for f in share:
                if f.id not in self.done:
                    on_lost(f)

    def take(self, f: Found, real: str | None) -> tuple[RunState, RunSource, int] | None:
        """The loaded run `f` (None when its worker failed it): its state, its reader, and the
        bytes of it the parse cache holds (0 when the snapshot was a temporary file, which is
        consumed here)."""
        from mudpuppy_monitor.core import snapshot

        path = self.done.get(f.id)
        if path is None or self.runs.get(f.id) != f:
            return None
        temporary = path.startswith(self.out_dir + os.sep)
        try:
            _, state, tail, meta_key = snapshot.decode(path)
        except (OSError, snapshot.SnapshotError):
            return None
        finally:
            if temporary:
                _unlink(path)
        source = open_source(f.source, f.path, real)
        restore(cast("NativeSource", source), tail, meta_key)  # snapshots are of native runs
        state.id, state.path = f.id, f.path
        return state, source, 0 if temporary else int(tail.get("offset", 0))

    def close(self, stop: bool = False) -> None:
        """Forget the workers; `stop`: end those still loading (the daemon is stopping; a cache
        entry is written whole or not at all). Their processes are reaped in a thread."""
        self.closed = True
        if stop:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.out_dir, ignore_errors=True)


def start_early(root: str, cache: ParseCache | None = None) -> Loader | None:
    """Discover the runs under `root` and start loading the large ones now (the caller goes on
    with its own start meanwhile); hand the Loader to the Monitor, which takes its results.
    The runs the parse cache holds have their entries read ahead (ParseCache.read_ahead)."""
    from mudpuppy_monitor.core.discovery import discover

    if not os.path.isdir(root):
        return None
    real = os.path.realpath(root)
    try:
        found = discover(real, os.path.basename(os.path.abspath(root))).values()
        big = plan(found, cache, single=True)  # the daemon answers while they load
    except OSError:
        return None
    if cache is not None:
        # the runs the cache holds are decoded from it while the daemon starts, for its first pass
        loading = {f.id for f in big}
        held = [f for f in found if f.source == NATIVE and f.id not in loading]
        cache.read_ahead([os.path.join(f.path, EVENTS_FILE) for f in held])
    if not big:
        return None
    return Loader(big, real, cache.base if cache is not None else None).start()


def load_all(
    runs: list[Found], root: str | None, cache_dir: str | None = None
) -> dict[str, tuple[RunState, RunSource]]:
    """Load runs in worker processes and wait for all of them."""
    loader = Loader(runs, root, cache_dir).start()
    try:
        loader.collect()
        out = {}
        for f in runs:
            got = loader.take(f, root)
            if got is not None:
                out[f.id] = got[:2]
        return out
    finally:
        loader.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _Reporter:
    """A worker's stdout: result lines, and every PROGRESS_S the bytes read of the run it is
    loading (from a thread of its own, since a run is read in one call)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: tuple[str, RunSource] | None = None
        self.said: tuple[str, int] | None = None
        self.done = threading.Event()
        self.broken = False

    def say(self, obj: dict[str, Any]) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                sys.stdout.write(json.dumps(obj) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):  # the daemon went away
                self.broken = True

    def tick(self) -> None:
        while not self.done.wait(PROGRESS_S):
            current = self.current
            if current is None:
                continue
            run_id, source = current
            got = (run_id, bytes_read(source))
            if got != self.said:
                self.said = got
                self.say({"id": run_id, "read": got[1]})


def _worker() -> None:
    from mudpuppy_monitor.core import snapshot
    from mudpuppy_monitor.core.parsecache import ParseCache

    job = json.loads(sys.stdin.buffer.read())
    root = job["root"]
    cache = ParseCache(job["cache"]) if job.get("cache") else None
    out_lines = _Reporter()
    threading.Thread(target=out_lines.tick, daemon=True).start()
    for i, (run_id, path, kind, dir_key) in enumerate(job["runs"]):
        f = Found(run_id, path, kind, (int(dir_key[0]), int(dir_key[1])))

        def started(source: RunSource, run_id: str = run_id) -> None:
            out_lines.current = (run_id, source)

        try:
            state, read = load_run(f, root, cache, on_source=started)
            out_lines.current = None
            source = cast("NativeSource", read)  # only native runs have a backlog to share
            tail = source.events
            stored = cache.store(state, tail, source.meta_key) if cache is not None else None
            if stored is not None:
                out = stored
            else:
                out = os.path.join(job["out"], f"{os.getpid()}-{i}.snap")
                header = snapshot.Header(0, 0, tail.offset, 0, 0, 0, False, "", 0)
                snapshot.write(out, snapshot.encode(header, state, tail, source.meta_key))
        except Exception:  # noqa: BLE001 - the daemon reads this run itself
            out_lines.current = None
            continue
        out_lines.say({"id": run_id, "file": out})
        if out_lines.broken:
            break  # nobody takes the results: stop decoding
    out_lines.done.set()


if __name__ == "__main__":
    _worker()
