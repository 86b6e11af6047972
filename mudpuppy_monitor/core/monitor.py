"""Monitor: the one in-process interface to a runs root (used by the server, the TUI, the CLI).

Reading happens in `refresh()` (synchronous, callable from any thread) or in the background task
of `start()`: `watchfiles.awatch` on the root is only a wake-up hint for the runs it names; a
full stat pass every `scan_interval_s` catches whatever inotify misses (network filesystems, a
root deleted and recreated). Once started, a large first read happens in the background
(core/loading.py). The queries are in answers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mudpuppy_monitor.core import prefetch, queries, watch
from mudpuppy_monitor.core import status as st
from mudpuppy_monitor.core.answers import Answers
from mudpuppy_monitor.core.changes import Changes, Subscription
from mudpuppy_monitor.core.discovery import Found, discover, run_of_path
from mudpuppy_monitor.core.entry import Entry, Loading
from mudpuppy_monitor.core.loading import BackgroundLoading, Backlog
from mudpuppy_monitor.core.parsecache import MIN_BYTES as MIN_CACHED
from mudpuppy_monitor.core.parsecache import forget_early
from mudpuppy_monitor.core.run import RunState

if TYPE_CHECKING:
    from mudpuppy_monitor.core.protocols import SummaryAnnotator

log = logging.getLogger(__name__)
READ_ERROR = "reader"  # the key in RunState.errors of an unexpected reader exception


class Monitor(BackgroundLoading, Answers):
    def __init__(
        self,
        root: str | os.PathLike[str],
        poll: bool = False,
        scan_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        pid_alive: Callable[[int], bool] | None = None,
        host: str | None = None,
        parallel: bool = True,
        stall_after_s: float | None = None,
        cache: Any = None,
        loader: Any = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.poll = poll
        self.scan_interval_s = scan_interval_s
        self.clock = clock
        self.pid_alive = pid_alive or st.default_pid_alive
        self.host = host or st.this_host()
        self.parallel = parallel  # decode a large initial backlog in worker processes
        # seconds of silence before a live run is stalled; None: learned per run (status.py)
        self.stall_after_s = stall_after_s
        self.cache = cache  # a ParseCache: runs loaded before are resumed from it
        self._loader = loader  # workers started early (prefetch.Loader), for the first pass
        # set by start(): a large first read happens in the background (see core/loading.py)
        self.background = False
        self._backlog = Backlog(self._load_later)
        self._loaders: list[prefetch.Loader] = []  # workers loading in the background
        self._pruned = False
        self._runs: dict[str, Entry] = {}
        self._lock = threading.RLock()  # guards the run data read by queries
        self._refresh_lock = threading.Lock()  # one reader at a time
        self._generations = itertools.count(1)
        self._statuses: dict[str, str] = {}
        self._unreadable: set[str] = set()  # directories already reported as unreadable
        self._refused: set[str] = set()  # run directories already reported as unnameable
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        # what a layer above adds to every summary (efficiency); called under the lock
        self.annotator: SummaryAnnotator | None = None

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> set[str]:
        """Discover runs and read everything new; returns the ids added, updated or removed."""
        with self._refresh_lock:
            changes = self._full_pass()
        self._publish(changes)
        return changes.ids()

    def _full_pass(self) -> Changes:
        real = os.path.realpath(self.root) if os.path.isdir(self.root) else None
        unreadable: set[str] = set()
        refused: set[str] = set()
        found = discover(real, os.path.basename(self.root), unreadable, refused) if real else {}
        for path in sorted(unreadable - self._unreadable):
            log.warning("skipping %s: the directory is not readable by this user", path)
        for path in sorted(refused - self._refused):
            # repr: the path holds a line break or bytes that are not UTF-8
            log.warning(
                "skipping %r: a run's path may not hold a line break, a backslash or bytes"
                " that are not UTF-8 (rename the directory)",
                path,
            )
        self._unreadable = unreadable
        self._refused = refused
        removed = set(self._runs) - set(found)
        with self._lock:
            for run_id in removed:
                del self._runs[run_id]
                self._statuses.pop(run_id, None)
        added: set[str] = set()
        updated: set[str] = set()
        fresh = []
        for run_id, f in found.items():
            entry = self._runs.get(run_id)
            if entry is not None and entry.loading is not None:
                continue  # its load reads it, then replaces the placeholder
            if entry is None or entry.found.dir_key != f.dir_key or entry.found.source != f.source:
                fresh.append(f)
                (updated if entry is not None else added).add(run_id)
            elif self._poll(entry, real):
                updated.add(run_id)
        later = self._defer(fresh, real) if self.background else set()
        self._load_many([f for f in fresh if f.id not in later], real)
        updated |= self._status_changes(set(found)) - added
        updated |= self._progressed()
        return Changes(frozenset(added), frozenset(updated), frozenset(removed))

    def refresh_paths(self, paths: Iterable[str]) -> set[str]:
        """Read only the runs that the changed paths belong to; unknown paths mean a full pass."""
        with self._refresh_lock:
            real = os.path.realpath(self.root) if os.path.isdir(self.root) else None
            ids: set[str] = set()
            root_run = self._root_run(real) if real is not None else None
            for p in paths:
                run_id = run_of_path(p, self.root, real, self._runs, root_run)
                if run_id is None:
                    changes = self._full_pass()
                    break
                ids.add(run_id)
            else:
                # statuses are compared on the timer pass; a run that got data is updated anyway
                changes = Changes(updated=frozenset(self._poll_known(ids, real)))
        self._publish(changes)
        return changes.ids()

    def _root_run(self, real: str) -> str | None:
        """The id of the root itself when it is a run (then it is the only one: a run directory
        is not searched further)."""
        if len(self._runs) != 1:
            return None
        run_id, entry = next(iter(self._runs.items()))
        return run_id if entry.found.path == real else None

    def _load_many(self, fresh: list[Found], real: str | None) -> None:
        """Load new runs; a large backlog is decoded on several cores (see prefetch)."""
        loader, self._loader = self._loader, None  # one started early serves the first pass
        if loader is not None:
            big = [f for f in fresh if loader.runs.get(f.id) == f]
        else:
            big = prefetch.plan(fresh, self.cache) if self.parallel else []
            cache_dir = self.cache.base if self.cache is not None else None
            loader = prefetch.Loader(big, real, cache_dir).start() if big else None
        for f in fresh:
            if f not in big:
                self._load(f, real)
        if loader is None:
            return
        try:
            loader.collect()
        except Exception:  # noqa: BLE001 - a worker problem must not lose runs: read them here
            pass
        try:
            for f in big:
                got = loader.take(f, real)
                if got is None:
                    self._load(f, real)
                    continue
                state, source, cached = got
                state.generation = next(self._generations)
                state.renumber = self._next_generation
                entry = Entry(f, state, source, cached)
                self._poll(entry, real)  # lines written while the worker read
                with self._lock:
                    self._runs[f.id] = entry
        finally:
            loader.close()

    def _poll_known(self, ids: set[str], real: str | None) -> set[str]:
        """Poll these runs (those still loading are left to their load); the ones that changed."""
        out = set()
        for run_id in ids:
            entry = self._runs.get(run_id)
            if entry is not None and entry.loading is None and self._poll(entry, real):
                out.add(run_id)
        return out

    def _load(self, f: Found, real: str | None) -> None:
        entry = self._read_new(f, real)
        entry.state.renumber = self._next_generation  # from now on clients may hold its indices
        with self._lock:
            self._runs[f.id] = entry

    def _read_new(self, f: Found, real: str | None, progress: Loading | None = None) -> Entry:
        """Read a run from the start (or from where the parse cache has it), not yet visible
        to queries; `progress` is told the reader, whose position is the load's progress."""
        state, source, restored = prefetch.open_run(f, real, self.cache)
        if progress is not None:
            progress.source = source
        if restored:
            try:
                reset = source.poll(state, contextlib.nullcontext())[1]
            except Exception:  # noqa: BLE001 - read it from the start, as without a cache
                reset = True
            if reset:  # the file changed under the cached state after it was checked
                state, source, restored = prefetch.open_run(f, real, self.cache, resume=False)
                if progress is not None:
                    progress.source = source
        state.generation = next(self._generations)
        entry = Entry(f, state, source)
        self._poll(entry, real, fresh=True)
        if state.train.n > 4096 and not restored:
            # a large initial read: drop the growth slack (a state from the cache is compact
            # already, and copying would keep its buffer alive beside the copies)
            for table in (state.train, state.eval, state.progress):
                table.compact()
        entry.cached = restored
        if self.cache is not None:
            stored = prefetch.store_grown(self.cache, state, source, restored, MIN_CACHED)
            entry.cached = entry.cached if stored is None else stored
        return entry

    def _poll(self, entry: Entry, real: str | None, fresh: bool = False) -> bool:
        # a run being loaded for the first time is not visible to queries yet: reading it under
        # the global lock would only block every query for the length of a big attach
        lock = contextlib.nullcontext() if fresh else self._lock
        try:
            changed, reset = entry.source.poll(entry.state, lock)
        except Exception as exc:  # noqa: BLE001 - one run's surprise must not stop the others
            self._read_failed(entry.state, exc)
            return True
        if reset and not fresh:
            # truncated or replaced: the run starts over under a new generation
            self._load(entry.found, real)
            return True
        return changed

    def _next_generation(self) -> int:
        return next(self._generations)

    def _read_failed(self, run: RunState, exc: BaseException) -> None:
        """Record an unexpected error of one run's reader; the run and the others go on."""
        log.warning("reading run %s failed", run.id, exc_info=exc)
        with self._lock:
            run.read_failures += 1
            run.errors[READ_ERROR] = (
                f"reader error ({run.read_failures}x): {type(exc).__name__}: {exc}"[:500]
            )

    def _status_changes(self, ids: set[str]) -> set[str]:
        now = self.clock()
        out = set()
        for run_id in ids:
            entry = self._runs.get(run_id)
            if entry is None or entry.loading is not None:
                continue
            try:
                with self._lock:
                    status = queries.run_status(
                        entry.state, now, self.pid_alive, self.host, self.stall_after_s
                    )
            except Exception as exc:  # noqa: BLE001 - see _poll
                self._read_failed(entry.state, exc)
                continue
            if self._statuses.get(run_id) != status:
                self._statuses[run_id] = status
                out.add(run_id)
        return out

    # -- background watching ------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self.background = True  # from now on a large backlog does not hold up the passes
        try:
            await asyncio.to_thread(self.refresh)
        except Exception:  # noqa: BLE001 - the watch task's passes will try again
            log.exception("first pass over %s failed", self.root)
        if self.cache is not None:
            forget_early()  # entries read ahead for runs the first pass did not find
        if not self.loading():
            await asyncio.to_thread(self._loaded)
        self._task = asyncio.create_task(self._watch_loop(), name="mudpuppy-monitor-watch")

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.close(stop=True)
            self._loader = None
        self._backlog.stop()
        loaders, self._loaders = self._loaders, []
        for loader in loaders:
            loader.close(stop=True)  # a run still loading is read again next time
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(task, timeout=5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
        for sub in list(self._subs):
            try:
                sub.loop.call_soon_threadsafe(sub.close)
            except RuntimeError:  # its loop is already closed
                pass
        if self.cache is not None:
            await asyncio.to_thread(self.store_grown)

    def store_grown(self) -> int:
        """Keep in the parse cache the runs that grew by MIN_CACHED or more since it last held
        them (what was read while serving), so the next start does not read it again."""
        stored = 0
        with self._refresh_lock:  # no reader changes a state while it is written out
            for entry in list(self._runs.values()):
                if self.cache is None:
                    break
                if entry.loading is not None:
                    continue
                got = prefetch.store_grown(
                    self.cache, entry.state, entry.source, entry.cached, MIN_CACHED
                )
                if got is not None:
                    entry.cached = got
                    stored += 1
        return stored

    async def _watch_loop(self) -> None:
        assert self._stop is not None
        if self.poll:
            await watch.poll_loop(self, self._stop)
        else:
            await watch.watch_loop(self, self._stop)

    def refresh_known(self) -> set[str]:
        """Read what is new in the runs already known (no discovery)."""
        with self._refresh_lock:
            real = os.path.realpath(self.root) if os.path.isdir(self.root) else None
            if real is None:
                changes = self._full_pass()
            else:
                updated = self._poll_known(set(self._runs), real) | self._progressed()
                changes = Changes(updated=frozenset(updated))
        self._publish(changes)
        return changes.ids()

    # -- data derived outside the run's files ---------------------------------------------

    def add_derived(
        self, run_id: str, generation: int, points: Sequence[tuple[int, float, dict[str, float]]]
    ) -> bool:
        """Append points a layer above computed for a run (per-interval efficiency) as series of
        the run: (step, t, {name: value}), in time order. They are queried, streamed and exported
        like the run's own series, live in memory only and go with the run's generation: points
        for another generation than the run's are dropped (False). Subscribers hear of it."""
        run = self._state(run_id)
        if run is None:
            return False
        with self._lock:
            if run.generation != generation:
                return False
            added = run.apply_derived(list(points))
        if added:
            self._publish(Changes(updated=frozenset({run_id})))
        return True

    def notify_updated(self, run_ids: Iterable[str]) -> None:
        """Tell subscribers that what a layer above adds to these runs' summaries changed (new
        efficiency figures), so they read the summaries again. Unknown ids are ignored."""
        known = frozenset(r for r in run_ids if r in self._runs)
        self._publish(Changes(updated=known))

    def subscribe(self) -> AsyncIterator[Changes]:
        """An async iterator of Changes batches, from now on (call it inside the event loop)."""
        sub = Subscription(asyncio.get_running_loop())
        self._subs.add(sub)
        return sub

    def _publish(self, changes: Changes) -> None:
        if not changes:
            return
        for sub in list(self._subs):
            try:
                sub.loop.call_soon_threadsafe(sub.push, changes)
            except RuntimeError:  # its loop is closed
                self._subs.discard(sub)
