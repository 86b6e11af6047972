"""The rules: one place that decides what is news, shared by every channel.

The engine is fed a run's state (`observe_run`, whenever it may have changed), its new markers
(`observe_markers`), its new eval values (`observe_evals`) and a periodic `tick()`; it answers
with Events. What existed before it was started is history: `prime` takes it in silently, and a
live input dated before `since` (the daemon's start) is history too. Each channel then keeps
the rules it wants and applies its own rate limits (limits.py).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mudpuppy_monitor.notify.events import FINAL_RULES, EvalPoint, Event, MarkerInfo, RunInfo
from mudpuppy_monitor.notify.settings import RuleSettings

# statuses whose arrival is news (stalled only while the status machine decides stalls)
STATUS_RULES = frozenset({*FINAL_RULES, "stalled"})
ALIVE = frozenset({"running", "stalled"})
# marker identities remembered per run, so a re-read file does not announce them again
SEEN_MARKERS = 1024


@dataclass
class _Run:
    info: RunInfo
    nonfinite_armed: bool = True  # no non-finite value announced since the run (re)started
    stall_mark: float | None = None  # last_event_t of the silence already judged by tick()
    best: float | None = None  # best eval value so far
    seen: set[tuple] = field(default_factory=set)
    seen_order: deque[tuple] = field(default_factory=deque)

    def first_time(self, key: tuple) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        self.seen_order.append(key)
        if len(self.seen_order) > SEEN_MARKERS:
            self.seen.discard(self.seen_order.popleft())
        return True


class RuleEngine:
    def __init__(
        self,
        settings: RuleSettings | None = None,
        since: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or RuleSettings()
        self.clock = clock
        self.since = clock() if since is None else since
        self._runs: dict[str, _Run] = {}

    # -- inputs ---------------------------------------------------------------------------

    def prime(
        self,
        run: RunInfo,
        markers: Iterable[MarkerInfo] = (),
        evals: Iterable[EvalPoint] = (),
    ) -> None:
        """A run as it was when watching began: remembered, never announced."""
        state = _Run(run)
        self._runs[run.id] = state
        self._markers(state, markers, live=False)
        self._evals(state, evals, live=False)

    def observe_run(self, run: RunInfo) -> list[Event]:
        state = self._runs.get(run.id)
        if state is None:
            # first seen while watching: its status is news only if it came after our start
            self._runs[run.id] = _Run(run)
            if run.status in self._status_rules() and self._new(run.last_event_t, run):
                return [self._status_event(run)]
            return []
        before, state.info = state.info, run
        if run.generation != before.generation:
            # files replaced or truncated: whatever is read now is a new run in the same place
            state.nonfinite_armed, state.best = True, None
        if run.status != before.status and run.status in self._status_rules():
            return [self._status_event(run)]
        return []

    def observe_markers(self, run: RunInfo, markers: Iterable[MarkerInfo]) -> list[Event]:
        state = self._state(run)
        return self._markers(state, markers, live=True)

    def observe_evals(self, run: RunInfo, points: Iterable[EvalPoint]) -> list[Event]:
        """New values of the configured eval metric (`RuleSettings.eval_metric`), in order."""
        state = self._state(run)
        return self._evals(state, points, live=True)

    def tick(self) -> list[Event]:
        """Stalls by `stall_after_s`: call every few seconds (a silence writes no line)."""
        after = self.settings.stall_after_s
        if after is None:
            return []
        now = self.clock()
        out = []
        for state in self._runs.values():
            run = state.info
            last = run.last_event_t
            if run.status not in ALIVE or last is None or not math.isfinite(last):
                continue
            if state.stall_mark == last or now - last <= after:
                continue
            state.stall_mark = last  # one verdict per silence; a new event re-arms it
            if last + after >= self.since:
                out.append(self._stall_event(run, now - last))
        return out

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    # -- deciding -------------------------------------------------------------------------

    def _status_rules(self) -> frozenset[str]:
        if self.settings.stall_after_s is None:
            return STATUS_RULES
        return STATUS_RULES - {"stalled"}  # tick() decides stalls by the configured silence

    def _state(self, run: RunInfo) -> _Run:
        state = self._runs.get(run.id)
        if state is None:
            state = self._runs[run.id] = _Run(run)
        else:
            state.info = run
        return state

    def _new(self, t: float | None, run: RunInfo) -> bool:
        """Dated after our start; an input without a time of its own is dated by the run's
        newest event, and one with neither is new (it was read after we started)."""
        for when in (t, run.last_event_t):
            if when is not None and math.isfinite(when):
                return when >= self.since
        return True

    def _markers(self, state: _Run, markers: Iterable[MarkerInfo], live: bool) -> list[Event]:
        run = state.info
        watched = self.settings.nonfinite_series
        nonfinite: list[MarkerInfo] = []
        spikes: list[MarkerInfo] = []
        for m in markers:
            if m.kind == "restart":
                state.nonfinite_armed = True
                continue
            if m.kind not in ("nonfinite", "spike"):
                continue
            fresh = state.first_time((m.kind, m.series, m.step, m.t))
            news = live and fresh and self._new(m.t, run)
            if m.kind == "spike":
                if news:
                    spikes.append(m)
            elif m.series in watched:
                if state.nonfinite_armed:
                    state.nonfinite_armed = False
                    if news:
                        nonfinite.append(m)
                elif nonfinite and m.step == nonfinite[0].step:
                    nonfinite.append(m)  # another series at the same step: named in the sentence
        out = []
        if nonfinite:
            out.append(_nonfinite_event(run, nonfinite))
        if spikes:
            out.append(_spike_event(run, spikes))
        return out

    def _evals(self, state: _Run, points: Iterable[EvalPoint], live: bool) -> list[Event]:
        s = self.settings
        run = state.info
        improved: tuple[EvalPoint, float] | None = None
        for p in points:
            if not math.isfinite(p.value):
                continue
            best = state.best
            if best is None:
                state.best = p.value  # the first value is the mark to beat, not news
                continue
            better = (
                p.value < best - s.eval_min_delta
                if s.eval_mode == "min"
                else p.value > best + s.eval_min_delta
            )
            if better:
                state.best = p.value
                if live and self._new(p.t, run):
                    improved = (p, best if improved is None else improved[1])
        if improved is None:
            return []
        p, before = improved
        message = (
            f"{s.eval_metric} improved to {p.value:.4g} at step {p.step} (best was {before:.4g})"
        )
        return [
            Event(
                "eval_improved",
                run.id,
                run.name,
                p.step,
                p.t,
                message,
                series=s.eval_metric,
                value=p.value,
                status=run.status,
            )
        ]

    def _status_event(self, run: RunInfo) -> Event:
        status = run.status
        if status == "stalled":
            last = run.last_event_t
            now = self.clock()
            silence = now - last if last is not None and math.isfinite(last) else None
            return self._stall_event(run, silence)
        at = _at(run.step)
        if status == "completed":
            loss = run.loss
            tail = f", loss {loss:.4g}" if loss is not None and math.isfinite(loss) else ""
            message = f"completed{at}{tail}"
        elif status == "failed":
            message = f"failed{at}" + (f": {run.error}" if run.error else "")
        elif status == "crashed":
            who = f"process {run.pid}" if run.pid is not None else "its process"
            message = f"crashed: {who} ended without an end event{at}"
        else:
            message = f"{status}{at}"
        # a final status is dated by the run's last event; a crash by when it was noticed
        t = self.clock() if status == "crashed" else run.last_event_t
        return Event(status, run.id, run.name, run.step, t, message, status=status)

    def _stall_event(self, run: RunInfo, silence: float | None) -> Event:
        quiet = f"no event for {duration(silence)}" if silence is not None else "no new event"
        message = f"stalled: {quiet}{_at(run.step)}"
        return Event("stalled", run.id, run.name, run.step, self.clock(), message, status="stalled")


def _nonfinite_event(run: RunInfo, hits: list[MarkerInfo]) -> Event:
    first = hits[0]
    message = first.detail or f"{first.series} is not finite{_at(first.step)}"
    others = sorted({m.series for m in hits[1:] if m.series and m.series != first.series})
    if others:
        message += f" (also {', '.join(others)})"
    return _marker_event("nonfinite", run, first, message)


def _spike_event(run: RunInfo, spikes: list[MarkerInfo]) -> Event:
    # the first spike of the batch is the news; the rest are counted
    first = spikes[0]
    message = first.detail or f"{first.series or 'loss'} spiked{_at(first.step)}"
    if len(spikes) > 1:
        message += f" (and {len(spikes) - 1} more up to step {spikes[-1].step})"
    return _marker_event("spike", run, first, message, count=len(spikes))


def _marker_event(rule: str, run: RunInfo, m: MarkerInfo, message: str, count: int = 1) -> Event:
    return Event(
        rule,
        run.id,
        run.name,
        m.step,
        m.t,
        message,
        series=m.series,
        value=m.value,
        status=run.status,
        count=count,
    )


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def duration(seconds: float) -> str:
    """90 -> "90 s", 720 -> "12 min", 9000 -> "2.5 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
