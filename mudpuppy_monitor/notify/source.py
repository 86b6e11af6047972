"""Feeding the rules from the runs being watched: status, markers and eval values per change.

`MonitorSource` reads what changed through the few queries of `RunQueries` (the Monitor has
them) and hands it to the RuleEngine; `NotificationService` runs that for an event loop: it
subscribes to the Monitor's changes, ticks for silences, and publishes through a Notifier.
The loop only waits: the rules run in a worker thread, HTTP in the channels' own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from mudpuppy_monitor.notify.events import EvalPoint, Event, MarkerInfo, RunInfo
from mudpuppy_monitor.notify.notifier import Notifier
from mudpuppy_monitor.notify.rules import RuleEngine
from mudpuppy_monitor.notify.settings import NotifySettings

log = logging.getLogger("mudpuppy_monitor.notify")

TICK_S = 5.0
# a batch of changes waits this long before the rules read it: what changes meanwhile is merged
# into the next batch, so a run logging at 10 Hz is read about twice a second, not ten times
SETTLE_S = 0.5
# markers per run and change whose value is looked up (the rest keep value None)
MAX_VALUE_LOOKUPS = 8


class RunQueries(Protocol):
    """What the notifications read of the runs (a subset of the Monitor's queries)."""

    def summaries(self) -> list[Any]: ...

    def summary(self, run_id: str) -> Any | None: ...

    def markers_since(self, run_id: str, n: int) -> list[dict[str, Any]]: ...

    def points_since(
        self,
        run_id: str,
        cursor: dict[str, int],
        names: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[int, dict[str, dict[str, Any]]]: ...

    def series(
        self,
        run_id: str,
        names: Iterable[str],
        x: str = "step",
        start: float | None = None,
        end: float | None = None,
        points: int = 2000,
    ) -> dict[str, dict[str, Any]]: ...


class LiveRunQueries(RunQueries, Protocol):
    """The queries plus the stream of changes (`Changes(added, updated, removed)` batches)."""

    def subscribe(self) -> AsyncIterator[Any]: ...


@dataclass
class _Cursor:
    generation: Any
    markers: int = 0
    evals: int = 0


class MonitorSource:
    def __init__(self, runs: RunQueries, engine: RuleEngine, evals: bool = False) -> None:
        self.runs = runs
        self.engine = engine
        self.evals = evals  # read eval values (only when some channel wants eval_improved)
        self._cursors: dict[str, _Cursor] = {}

    def prime(self) -> None:
        """Take in every run as it is now: history, never news."""
        for summary in self.runs.summaries():
            if getattr(summary, "loading", None) is not None:
                continue  # nothing read yet: met when it has loaded, dated as any other run
            info = run_info(summary)
            cursor = _Cursor(info.generation)
            markers = self._markers(info.id, cursor)
            evals = self._evals(info.id, cursor)
            self._cursors[info.id] = cursor
            self.engine.prime(info, markers, evals)

    def changed(self, changes: Any) -> list[Event]:
        """Events for one `Changes(added, updated, removed)` notice."""
        out: list[Event] = []
        for run_id in sorted(changes.removed):
            self._cursors.pop(run_id, None)
            self.engine.forget(run_id)
        for run_id in sorted((set(changes.added) | set(changes.updated)) - set(changes.removed)):
            summary = self.runs.summary(run_id)
            if summary is None or getattr(summary, "loading", None) is not None:
                continue  # still loading: no status or marker of it is known yet
            info = run_info(summary)
            cursor = self._cursors.get(run_id)
            if cursor is None or cursor.generation != info.generation:
                cursor = self._cursors[run_id] = _Cursor(info.generation)  # read it from 0
            out += self.engine.observe_run(info)
            out += self._with_values(
                self.engine.observe_markers(info, self._markers(run_id, cursor))
            )
            if self.evals:
                out += self.engine.observe_evals(info, self._evals(run_id, cursor))
        return out

    def tick(self) -> list[Event]:
        return self.engine.tick()

    def _markers(self, run_id: str, cursor: _Cursor) -> list[MarkerInfo]:
        raw = self.runs.markers_since(run_id, cursor.markers) or []
        cursor.markers += len(raw)
        return [marker_info(m) for m in raw if isinstance(m, dict)]

    def _evals(self, run_id: str, cursor: _Cursor) -> list[EvalPoint]:
        if not self.evals:
            return []
        metric = self.engine.settings.eval_metric
        _, grown = self.runs.points_since(run_id, {metric: cursor.evals}, names=[metric])
        cols = grown.get(metric)
        if not cols:
            return []
        i0, steps = int(cols["i0"]), cols["step"]
        cursor.evals = i0 + len(steps)
        return [
            EvalPoint(int(s), _time(t), float(y))
            for s, t, y in zip(steps, cols["t"], cols["y"], strict=False)
            if isinstance(y, (int, float))
        ]

    def _with_values(self, events: list[Event]) -> list[Event]:
        """Markers carry no value: look up the marked one for the few events that go out."""
        out = []
        for event in events[:MAX_VALUE_LOOKUPS]:
            if event.value is None and event.series and event.step is not None:
                value = self._value_at(event)
                if value is not None:
                    event = dataclasses.replace(event, value=value)
            out.append(event)
        return out + events[MAX_VALUE_LOOKUPS:]

    def _value_at(self, event: Event) -> float | None:
        assert event.series is not None and event.step is not None
        try:
            found = self.runs.series(
                event.run, [event.series], x="step", start=event.step, end=event.step, points=16
            )
        except Exception:  # noqa: BLE001 - a value is a nicety; the notification goes anyway
            return None
        ys = [y for y in (found.get(event.series) or {}).get("y", []) if isinstance(y, float)]
        if not ys:
            return None
        if event.rule == "nonfinite":
            bad = [y for y in ys if not math.isfinite(y)]
            return bad[0] if bad else None
        return max(ys)


class NotificationService:
    """Rules and channels attached to a Monitor: `await start()` inside the event loop.

    The loop only waits: the rules read the runs in one worker thread of their own (the
    Monitor's queries take its lock, which its reader may hold for a while), and every HTTP
    request happens in the channel's thread. The stream to the pages never waits for either.
    """

    def __init__(
        self,
        runs: LiveRunQueries,
        settings: NotifySettings,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = TICK_S,
        settle_s: float = SETTLE_S,
        notifier: Notifier | None = None,
    ) -> None:
        self.runs = runs
        self.notifier = notifier or Notifier(settings)
        self.engine = RuleEngine(settings.rules, clock=clock)  # since: now
        self.source = MonitorSource(runs, self.engine, self.notifier.wants("eval_improved"))
        self.tick_s = tick_s
        self.settle_s = settle_s
        self._tasks: list[asyncio.Task[None]] = []
        self._worker: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        # one thread for the rules: their state is touched by nothing else, in order
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mudpuppy-rules")
        self.notifier.start()
        # subscribe before priming: a change in between is seen twice (the cursors make the
        # second empty), never missed
        changes = self.runs.subscribe()
        await self._in_worker(self.source.prime)
        self._tasks = [
            asyncio.create_task(self._consume(changes), name="mudpuppy-notify"),
            asyncio.create_task(self._ticks(), name="mudpuppy-notify-tick"),
        ]

    async def stop(self, timeout_s: float = 2.0) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
        # joining the channel threads blocks: off the loop
        await asyncio.to_thread(self.notifier.close, timeout_s)

    async def _consume(self, changes: AsyncIterator[Any]) -> None:
        try:
            async for batch in changes:
                await asyncio.sleep(self.settle_s)
                await self._in_worker(functools.partial(self._run, self.source.changed, batch))
        except asyncio.CancelledError:
            raise
        except Exception:  # the stream itself failed: say so once, the daemon serves on
            log.exception("notifications stopped: the stream of run changes failed")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self._in_worker(functools.partial(self._run, self.source.tick))

    async def _in_worker(self, fn: Callable[[], None]) -> None:
        assert self._worker is not None, "Expected a started NotificationService"
        await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def _run(self, step: Callable[..., list[Event]], *args: Any) -> None:
        try:
            self.notifier.publish(step(*args))
        except Exception:  # one bad change must not end notifications for every run
            log.exception("notification rules failed on a change")


def run_info(summary: Any) -> RunInfo:
    """The rules' view of a run summary (RunSummary, or anything with the same fields)."""
    loss = getattr(summary, "loss", None)
    return RunInfo(
        id=summary.id,
        name=getattr(summary, "name", None) or summary.id,
        status=summary.status,
        step=getattr(summary, "step", None),
        last_event_t=_time(getattr(summary, "last_event_t", None)),
        pid=getattr(summary, "pid", None),
        error=getattr(summary, "error", None),
        loss=loss if isinstance(loss, (int, float)) else None,
        generation=getattr(summary, "generation", 0),
    )


def marker_info(m: dict[str, Any]) -> MarkerInfo:
    step = m.get("step")
    return MarkerInfo(
        kind=str(m.get("kind")),
        step=step if isinstance(step, int) else None,
        t=_time(m.get("t")),
        series=m.get("series"),
        detail=str(m.get("detail") or ""),
    )


def _time(t: Any) -> float | None:
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
        return float(t)
    return None
