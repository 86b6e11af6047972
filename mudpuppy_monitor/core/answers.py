"""The queries of the Monitor (docs/architecture.md): each takes the Monitor's lock only long
enough to read its runs' arrays, and answers a run still loading from its placeholder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mudpuppy_monitor.core import configdiff, queries
from mudpuppy_monitor.core.entry import Entry
from mudpuppy_monitor.core.export import export_chunks
from mudpuppy_monitor.core.queries import LoraRow, SeriesAnswer
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.summary import RunSummary

if TYPE_CHECKING:
    from mudpuppy_monitor.core.protocols import SummaryAnnotator


class Answers:
    """The query methods of `Monitor`, over its runs and lock."""

    _runs: dict[str, Entry]
    _lock: threading.RLock
    clock: Callable[[], float]
    pid_alive: Callable[[int], bool]
    host: str
    stall_after_s: float | None
    annotator: SummaryAnnotator | None

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def _state(self, run_id: str) -> RunState | None:
        entry = self._runs.get(run_id)
        return entry.state if entry is not None else None

    def _summary(self, entry: Entry, now: float) -> RunSummary:
        progress = entry.loading.as_dict() if entry.loading is not None else None
        run = entry.state
        summary = queries.make_summary(
            run, now, self.pid_alive, self.host, self.stall_after_s, progress
        )
        if self.annotator is not None:
            summary = self.annotator.summary(summary, run.meta)
        return summary

    def summary(self, run_id: str) -> RunSummary | None:
        entry = self._runs.get(run_id)
        if entry is None:
            return None
        with self._lock:
            return self._summary(entry, self.clock())

    def summaries(self) -> list[RunSummary]:
        """Every run, the most recently active first."""
        now = self.clock()
        with self._lock:
            out = [self._summary(e, now) for e in list(self._runs.values())]
        out.sort(key=lambda s: (-(s.last_event_t or 0.0), s.id))
        return out

    def detail(self, run_id: str) -> dict[str, Any] | None:
        entry = self._runs.get(run_id)
        if entry is None:
            return None
        with self._lock:
            summary = self._summary(entry, self.clock())
            out = queries.detail(entry.state, summary)
            if self.annotator is not None:
                out["efficiency"] = self.annotator.detail(summary, entry.state.meta)
            return out

    def counts(self, run_id: str) -> dict[str, int]:
        """Points held per series: the cursor of a client that has everything."""
        run = self._state(run_id)
        if run is None:
            return {}
        with self._lock:
            return queries.counts(run)

    def generation(self, run_id: str) -> int | None:
        run = self._state(run_id)
        return None if run is None else run.generation

    def series(
        self,
        run_id: str,
        names: Iterable[str] | None = None,
        x: str = "step",
        start: float | None = None,
        end: float | None = None,
        points: int = 2000,
        arrays: bool = False,
    ) -> SeriesAnswer:
        """Decimated columns per series (`names` None: every series; unknown names are left
        out), with `.generation`, read under the same lock: the generation of this data (None
        for an unknown run). `arrays`: the columns as numpy arrays, not lists."""
        if x not in ("step", "time"):
            raise ValueError(f"x must be 'step' or 'time', got {x!r}")
        run = self._state(run_id)
        if run is None:
            return SeriesAnswer(generation=None)
        with self._lock:
            wanted = run.series_names() if names is None else list(names)
            return queries.series(run, wanted, x, start, end, points, arrays)

    def points_since(
        self,
        run_id: str,
        cursor: dict[str, int],
        names: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[int, dict[str, dict[str, Any]]]:
        """(generation, new points per series); generation -1 when the run is unknown."""
        run = self._state(run_id)
        if run is None:
            return -1, {}
        with self._lock:
            return run.generation, queries.points_since(run, cursor, names, limit)

    def markers_since(self, run_id: str, n: int) -> list[dict[str, Any]]:
        """The markers after the first `n` (markers are append-only per generation)."""
        run = self._state(run_id)
        if run is None:
            return []
        with self._lock:
            return list(run.markers[max(0, n) :])

    def marker_count(self, run_id: str) -> int:
        run = self._state(run_id)
        if run is None:
            return 0
        with self._lock:
            return len(run.markers)

    def last_lora(self, run_id: str) -> LoraRow | None:
        """The newest LoRA snapshot (None when there is none yet)."""
        run = self._state(run_id)
        if run is None:
            return None
        with self._lock:
            return queries.last_lora(run)

    def lora(self, run_id: str, points: int = 200) -> dict[str, Any] | None:
        run = self._state(run_id)
        if run is None:
            return None
        with self._lock:
            return queries.lora(run, points)

    def samples(
        self, run_id: str, start: float | None = None, end: float | None = None, limit: int = 200
    ) -> dict[str, Any] | None:
        """The `samples` events with a step in [start, end]: the last `limit` of them, with
        `count` (events the run holds) and `total` (in the range); None for an unknown run."""
        run = self._state(run_id)
        if run is None:
            return None
        with self._lock:
            total, events = run.samples.select(start, end, limit)
            count = len(run.samples)
            return {"generation": run.generation, "count": count, "total": total, "events": events}

    def samples_since(
        self, run_id: str, n: int, limit: int | None = None
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """(generation, i0, the events from index n on: the last `limit` when more); generation
        -1 for an unknown run. `limit=0` asks only for the count (`i0`)."""
        run = self._state(run_id)
        if run is None:
            return -1, 0, []
        with self._lock:
            i0, events = run.samples.since(n, limit)
            return run.generation, i0, events

    def columns(
        self, run_id: str, names: Iterable[str] | None = None, points: int = 2000
    ) -> dict[str, dict[str, Any]]:
        """Decimated step, time and value columns per series (see queries.columns); {} for an
        unknown run."""
        run = self._state(run_id)
        if run is None:
            return {}
        with self._lock:
            wanted = run.series_names() if names is None else list(names)
            return queries.columns(run, wanted, points)

    def config_diff(self, run_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """{"keys": differing dotted config keys, "values": {run: {key: value}}} over the
        given runs (None: every run); unknown ids are left out."""
        with self._lock:
            ids = list(self._runs) if run_ids is None else [r for r in run_ids if r in self._runs]
            configs = {r: configdiff.config_of(self._runs[r].state.meta) for r in ids}
        return configdiff.config_diff(configs)

    def export(self, run_id: str, fmt: str = "csv", superseded: bool = False) -> Iterator[str]:
        """Every point; `superseded` adds the points resumed attempts replaced, marked."""
        run = self._state(run_id)
        if run is None:
            raise KeyError(run_id)
        return export_chunks(run, fmt, self._lock, superseded)

    def log_tail(self, run_id: str, n: int) -> dict[str, Any] | None:
        """The last `n` lines of the run's output held (see queries.log_tail); None for an
        unknown run."""
        run = self._state(run_id)
        if run is None:
            return None
        with self._lock:
            return queries.log_tail(run, n)

    def log_since(
        self, run_id: str, i: int, limit: int | None = None
    ) -> tuple[int, int, list[str]]:
        """(generation, i0, the output lines from line `i` on, at most the last `limit`);
        generation -1 when the run is unknown."""
        run = self._state(run_id)
        if run is None:
            return -1, 0, []
        with self._lock:
            return (run.generation, *queries.log_since(run, i, limit))
