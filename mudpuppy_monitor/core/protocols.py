"""The seams between the core and its front ends: what the server, the TUI and the commands may
ask of a set of runs. `Monitor` implements them; a front end takes the narrowest it needs, so a
test (or another store of runs) can stand in with only those methods.

- `RunQueries`: the read side, safe to call from any thread (each call takes the core's lock);
- `LiveRuns`: plus the stream of changes (the web server);
- `RefreshableRuns`: plus a synchronous read pass (the terminal view, one-shot commands);
- `DerivedRuns`: plus series and summary figures computed outside the run's files by a layer
  that combines runs with other data (efficiency, from GPU samples);
- `SummaryAnnotator`: that layer's side: what it adds to each summary and detail.

A new kind of data a run holds (a log tail, generated samples) is a new query here, answered
under the core's lock like the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from mudpuppy_monitor.core.changes import Changes
from mudpuppy_monitor.core.queries import LoraRow, SeriesAnswer
from mudpuppy_monitor.core.summary import RunSummary

__all__ = [
    "Changes",
    "DerivedRuns",
    "LiveRuns",
    "LoraRow",
    "RefreshableRuns",
    "RunQueries",
    "SeriesAnswer",
    "SummaryAnnotator",
]


class RunQueries(Protocol):
    def run_ids(self) -> list[str]: ...

    def summary(self, run_id: str) -> RunSummary | None: ...

    def summaries(self) -> list[RunSummary]:
        """Every run, the most recently active first."""
        ...

    def detail(self, run_id: str) -> dict[str, Any] | None:
        """Plain data: meta, the summary as a JSON-safe dict, series names, counts, markers..."""
        ...

    def counts(self, run_id: str) -> dict[str, int]:
        """Points held per series: the cursor of a client that has everything."""
        ...

    def generation(self, run_id: str) -> int | None: ...

    def loading(self) -> dict[str, dict[str, int]]:
        """The runs whose backlog is still being read: {"bytes": read, "total": size} each."""
        ...

    def series(
        self,
        run_id: str,
        names: Iterable[str] | None = None,
        x: str = "step",
        start: float | None = None,
        end: float | None = None,
        points: int = 2000,
        arrays: bool = False,
    ) -> SeriesAnswer: ...

    def points_since(
        self,
        run_id: str,
        cursor: dict[str, int],
        names: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[int, dict[str, dict[str, Any]]]: ...

    def marker_count(self, run_id: str) -> int: ...

    def markers_since(self, run_id: str, n: int) -> list[dict[str, Any]]: ...

    def last_lora(self, run_id: str) -> LoraRow | None: ...

    def lora(self, run_id: str, points: int = 200) -> dict[str, Any] | None: ...

    def export(self, run_id: str, fmt: str = "csv", superseded: bool = False) -> Iterator[str]: ...

    def log_tail(self, run_id: str, n: int) -> dict[str, Any] | None:
        """The last `n` output lines held: generation, start, end, first, lines, skipped."""
        ...

    def log_since(
        self, run_id: str, i: int, limit: int | None = None
    ) -> tuple[int, int, list[str]]:
        """(generation, i0, output lines from line `i` on); generation -1: unknown run."""
        ...

    def samples(
        self, run_id: str, start: float | None = None, end: float | None = None, limit: int = 200
    ) -> dict[str, Any] | None:
        """Generated samples with a step in [start, end] (the last `limit`), None when unknown."""
        ...

    def samples_since(
        self, run_id: str, n: int, limit: int | None = None
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """(generation, i0, sample events from index n on); generation -1 when unknown."""

    def columns(
        self, run_id: str, names: Iterable[str] | None = None, points: int = 2000
    ) -> dict[str, dict[str, Any]]:
        """Decimated step, time and value columns per series (numpy arrays), for a report."""
        ...

    def config_diff(self, run_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """{"keys": [dotted config keys that differ], "values": {run: {key: value}}}."""
        ...


class LiveRuns(RunQueries, Protocol):
    def subscribe(self) -> AsyncIterator[Changes]:
        """Batches of changed run ids from now on (call it inside the event loop)."""
        ...


class RefreshableRuns(RunQueries, Protocol):
    def refresh(self) -> set[str]:
        """Read what is new now; the ids of the runs added, updated or removed."""
        ...


class DerivedRuns(RunQueries, Protocol):
    def add_derived(
        self, run_id: str, generation: int, points: Sequence[tuple[int, float, dict[str, float]]]
    ) -> bool:
        """Append (step, t, {series: value}) points computed for the run, in time order."""
        ...

    def notify_updated(self, run_ids: Iterable[str]) -> None:
        """Subscribers read these runs' summaries again (their added figures changed)."""
        ...


class SummaryAnnotator(Protocol):
    """What a layer above the core adds to a run's summary and detail (the efficiency figures).
    Called under the core's lock for every summary built, from any thread: it must be quick and
    must never call back into the Monitor."""

    def summary(self, summary: RunSummary, meta: Mapping[str, Any]) -> RunSummary: ...

    def detail(self, summary: RunSummary, meta: Mapping[str, Any]) -> dict[str, Any] | None:
        """The detail's `efficiency` object (values, reasons, how they were computed)."""
        ...
