"""The queries of the Monitor (docs/architecture.md): each takes the Monitor's lock only long
enough to read its runs' arrays, and answers a run still loading from its placeholder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mudpuppy_monitor.core import queries
from mudpuppy_monitor.core.entry import Entry
from mudpuppy_monitor.core.export import export_chunks
from mudpuppy_monitor.core.queries import LoraRow, SeriesAnswer
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.summary import RunSummary


class Answers:
    """The query methods of `Monitor`, over its runs and lock."""

    _runs: dict[str, Entry]
    _lock: threading.RLock
    clock: Callable[[], float]
    pid_alive: Callable[[int], bool]
    host: str

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def _state(self, run_id: str) -> RunState | None:
        entry = self._runs.get(run_id)
        return entry.state if entry is not None else None

    def _summary(self, entry: Entry, now: float) -> RunSummary:
        progress = entry.loading.as_dict() if entry.loading is not None else None
        return queries.make_summary(entry.state, now, self.pid_alive, self.host, progress)

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
            return queries.detail(entry.state, self._summary(entry, self.clock()))

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

    def export(self, run_id: str, fmt: str = "csv") -> Iterator[str]:
        run = self._state(run_id)
        if run is None:
            raise KeyError(run_id)
        return export_chunks(run, fmt, self._lock)
