"""Runs whose backlog is read in the background while the daemon already answers.

Once `Monitor.start()` has begun, a new run with at least LATER_MIN_BYTES left to decode (what
the parse cache does not already hold) is not read by the pass that finds it. The pass lists it
at once as a placeholder: its meta.json only, status `unknown`, and a `Loading` progress (bytes
read of its events file's size). The backlog is read meanwhile by worker processes (prefetch) or,
when there are none, by one background thread of the Monitor, smallest run first; when a run is
read it replaces its placeholder under a new generation, so every front end refetches it. Until
then no pass reads the run, and queries answer the placeholder (no points).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mudpuppy_monitor.core import prefetch
from mudpuppy_monitor.core.changes import Changes
from mudpuppy_monitor.core.discovery import Found
from mudpuppy_monitor.core.entry import Entry, Loading
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.sources import RunSource, open_source

if TYPE_CHECKING:
    from mudpuppy_monitor.core.parsecache import ParseCache

log = logging.getLogger(__name__)

LATER_MIN_BYTES = 1 << 20  # a smaller first read is done by the pass that finds the run


def placeholder(f: Found, real: str | None, generation: int) -> tuple[RunState, RunSource]:
    """What a run shows while it loads: a state holding its meta.json only (name, host, pid),
    and the reader that read it (never polled: the load has a reader of its own)."""
    state = RunState(f.id, f.path, f.source, generation)
    source = open_source(f.source, f.path, real)
    poll_meta = getattr(source, "poll_meta", None)
    if poll_meta is not None:
        try:
            poll_meta(state, contextlib.nullcontext())
        except Exception:  # noqa: BLE001 - the load reports what is wrong with the run
            log.debug("meta of %s not read", f.id, exc_info=True)
    return state, source


class Backlog:
    """One daemon thread reading runs in-process, one after another, in the order given."""

    def __init__(self, read: Callable[[Found], None]) -> None:
        self.read = read
        self.queue: queue.Queue[Found | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.stopped = False

    def add(self, runs: Iterable[Found]) -> None:
        with self.lock:
            if self.stopped:
                return
            for f in runs:
                self.queue.put(f)
            if self.thread is None and not self.queue.empty():
                # a daemon thread: a stopping daemon does not wait for a read in progress
                self.thread = threading.Thread(
                    target=self._run, name="mudpuppy-backlog", daemon=True
                )
                self.thread.start()

    def _run(self) -> None:
        while True:
            f = self.queue.get()
            if f is None:
                return
            try:
                self.read(f)
            except Exception:  # noqa: BLE001 - one run's surprise must not stop the others
                log.exception("loading run %s failed", f.id)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            while True:
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
            self.queue.put(None)


class BackgroundLoading:
    """The Monitor's part that reads large backlogs in the background (mixed into Monitor)."""

    root: str
    cache: ParseCache | None
    parallel: bool
    _runs: dict[str, Entry]
    _lock: threading.RLock
    _refresh_lock: threading.Lock
    _generations: Any  # itertools.count
    _loader: prefetch.Loader | None
    _loaders: list[prefetch.Loader]
    _backlog: Backlog
    _pruned: bool

    if TYPE_CHECKING:

        def _read_new(
            self, f: Found, real: str | None, progress: Loading | None = None
        ) -> Entry: ...

        def _read_failed(self, run: RunState, exc: BaseException) -> None: ...

        def _status_changes(self, ids: set[str]) -> set[str]: ...

        def _publish(self, changes: Changes) -> None: ...

        def _next_generation(self) -> int: ...

    def _defer(self, fresh: list[Found], real: str | None) -> set[str]:
        """List the fresh runs with a large backlog as loading and start reading them in the
        background; their ids. The others are read by the caller."""
        later = []
        for f in fresh:
            if prefetch.backlog_bytes(f, self.cache) >= LATER_MIN_BYTES:
                later.append((f, prefetch.backlog_bytes(f)))
        if not later:
            return set()
        for f, size in later:
            state, source = placeholder(f, real, next(self._generations))
            entry = Entry(f, state, source, loading=Loading(size))
            with self._lock:
                self._runs[f.id] = entry
        runs = [f for f, _ in sorted(later, key=lambda fs: fs[1])]  # the smallest first
        loader, self._loader = self._loader, None  # one started early serves the first pass
        if loader is not None:
            workers = [f for f in runs if loader.runs.get(f.id) == f]
        else:
            workers = prefetch.plan(runs, self.cache, single=True) if self.parallel else []
            cache_dir = self.cache.base if self.cache is not None else None
            loader = prefetch.Loader(workers, real, cache_dir).start() if workers else None
        if loader is not None:
            self._loaders.append(loader)
            took = loader

            def done(f: Found) -> None:
                got = took.take(f, real)
                if got is None:
                    self._backlog.add([f])
                    return
                state, source, cached = got
                state.generation = next(self._generations)
                self._install(Entry(f, state, source, cached), real)

            loader.follow(on_done=done, on_progress=self._reported, on_lost=self._lost)
        self._backlog.add(f for f in runs if f not in workers)
        return {f.id for f in runs}

    def _loading_entry(self, f: Found) -> Entry | None:
        """The placeholder of `f` while it is still waited for (None: removed or replaced)."""
        entry = self._runs.get(f.id)
        if entry is None or entry.loading is None or entry.found != f:
            return None
        return entry

    def _reported(self, f: Found, read: int) -> None:
        entry = self._loading_entry(f)
        if entry is not None and entry.loading is not None:
            entry.loading.read = read

    def _lost(self, f: Found) -> None:
        self._backlog.add([f])  # its worker failed: read it here

    def _load_later(self, f: Found) -> None:
        """Read one deferred run in this process (the backlog thread)."""
        holder = self._loading_entry(f)
        if holder is None:
            return
        real = os.path.realpath(self.root) if os.path.isdir(self.root) else None
        self._install(self._read_new(f, real, holder.loading), real)

    def _install(self, entry: Entry, real: str | None) -> None:
        """Replace the placeholder of a run whose backlog was read, with what was appended
        meanwhile; dropped when the run went away or was replaced while it loaded."""
        f = entry.found
        with self._refresh_lock:
            if self._loading_entry(f) is None:
                return
            try:
                reset = entry.source.poll(entry.state, contextlib.nullcontext())[1]
            except Exception as exc:  # noqa: BLE001 - see _poll
                self._read_failed(entry.state, exc)
                reset = False
            if reset:  # truncated or replaced while it loaded: read it again
                self._backlog.add([f])
                return
            entry.state.renumber = self._next_generation  # clients may hold its indices now
            with self._lock:
                self._runs[f.id] = entry
            self._status_changes({f.id})
            idle = not any(e.loading is not None for e in list(self._runs.values()))
        self._publish(Changes(updated=frozenset({f.id})))
        if idle:
            self._loaded()

    def _loaded(self) -> None:
        """Nothing is loading any more: let the workers go, prune the parse cache once."""
        with self._refresh_lock:
            loaders, self._loaders = self._loaders, []
        for loader in loaders:
            loader.close()
        if self.cache is not None and not self._pruned:
            self._pruned = True
            self.cache.prune()  # after the entries in use were touched

    def _progressed(self) -> set[str]:
        """Loading runs whose progress is worth publishing now."""
        now = time.monotonic()
        return {
            run_id
            for run_id, e in list(self._runs.items())
            if e.loading is not None and e.loading.due(now)
        }

    def loading(self) -> dict[str, dict[str, int]]:
        """The runs whose backlog is still loading, with their progress (bytes, total)."""
        return {
            run_id: e.loading.as_dict()
            for run_id, e in list(self._runs.items())
            if e.loading is not None
        }

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until no run is loading (True) or `timeout` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.loading():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True
