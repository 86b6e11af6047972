"""From the core's change notices to protocol messages: summaries, points, LoRA, alerts, GPUs.

The hub publishes; this module decides what to say. Per run it keeps the cursor of the points
already streamed (so every point is sent once, in order, and `i0` tells a client where it
belongs), the number of markers already seen, and the last status (for alerts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mudpuppy_monitor.core.protocols import Changes, LoraRow, RunQueries
from mudpuppy_monitor.core.summary import RunSummary
from mudpuppy_monitor.gpu.attribution import attribute
from mudpuppy_monitor.gpu.base import GpuBackend, SampleFeed, backend_json
from mudpuppy_monitor.gpu.records import Attribution, GpuSample, attribution_json
from mudpuppy_monitor.notify.news import NewsItem

# statuses worth telling the user about when a run enters them
ALERT_STATUSES = frozenset({"stalled", "crashed", "completed", "failed", "interrupted"})
# markers that are alerts; `end` is told by its status change, checkpoints/restarts are not news
ALERT_MARKERS = frozenset({"nonfinite", "spike"})
# a run first seen in a final state long after it ended is history, not news; so is a marker
# of a run first seen (or reset) that is older than this
FRESH_S = 60.0
# marker alerts per run and change: a run copied in with thousands of NaN streaks must not fill
# every client's queue in one go (each would be resynced, then dropped); the rest are summed up
MAX_MARKER_ALERTS = 5
# samples events streamed per run and change; more (a run copied in) are announced, not sent:
# the client sees `i0` past what it holds and fetches them over HTTP
MAX_STREAM_SAMPLES = 16
MAX_STREAM_SAMPLE_CHARS = 2 << 20  # text per message, unless a single event holds more
# output lines per `log` message: what the core holds of a run at most; a run that printed more
# since the last change leaves a gap in i0 (the client fetches the tail again)
MAX_LOG_LINES = 1000

Message = tuple[dict[str, Any], "str | None"]


@dataclass
class RunCursor:
    generation: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    markers: int = 0
    samples: int = 0  # samples events already streamed
    status: str | None = None
    lora_last: tuple[int, float] | None = None  # (step, t) of the last LoRA snapshot sent
    # (last_event_t, step) when LoRA was last looked at: a new snapshot is a new event, so a
    # change that moved neither (a status change, a meta rewrite) cannot hold one
    lora_seen: tuple[float | None, int | None] | None = None
    # markers are read from 0 (a run first seen while serving, or reset): the old ones are
    # history, only those within FRESH_S of now are alerts
    catch_up: bool = False
    log: int = 0  # the number of the next output line to stream
    # its backlog was still loading when last seen: once loaded it counts as first seen
    loading: bool = False


class ChangeTracker:
    def __init__(
        self,
        monitor: RunQueries,
        max_stream_points: int = 5000,
        log_wanted: Callable[[str], bool] = lambda run: False,
    ) -> None:
        self.monitor = monitor
        self.max_stream_points = max_stream_points
        # does any client have this run's log open? Lines nobody shows are not serialized
        self.log_wanted = log_wanted
        self.runs: dict[str, RunCursor] = {}

    def prime(self) -> None:
        """Start from what exists now: history is for HTTP, the stream carries what is new."""
        for s in self.monitor.summaries():
            self.runs[s.id] = RunCursor(
                generation=s.generation,
                counts=dict(self.monitor.counts(s.id)),
                markers=self.monitor.marker_count(s.id),
                samples=self.monitor.samples_since(s.id, 0, limit=0)[1],
                status=s.status,
                lora_last=_lora_key(self.monitor.last_lora(s.id)),
                log=self.monitor.log_since(s.id, 1 << 62)[1],  # the end: history is for HTTP
                loading=s.loading is not None,
            )

    def messages(self, changes: Changes) -> Iterator[Message]:
        removed = set(changes.removed)
        for run_id in sorted(removed):
            self.runs.pop(run_id, None)
            yield {"type": "run_removed", "id": run_id}, None
        changed = (set(changes.added) | set(changes.updated)) - removed
        summaries = [s for s in (self.monitor.summary(r) for r in sorted(changed)) if s]
        if summaries:
            yield {"type": "runs", "runs": [s.to_dict() for s in summaries]}, None
        for s in summaries:
            yield from self._run_messages(s)

    def _run_messages(self, summary: RunSummary) -> Iterator[Message]:
        run_id = summary.id
        state = self.runs.get(run_id)
        # a run whose backlog just loaded is history up to now, as if first seen
        fresh = state is None or state.loading
        if state is None or state.generation != summary.generation:
            # new run, or reset (truncated, replaced, recreated): stream it from its start
            state = RunCursor(
                generation=summary.generation,
                status=None if state is None else state.status,
                catch_up=True,
            )
            self.runs[run_id] = state
        state.loading = summary.loading is not None
        yield from self._points(run_id, state)
        yield from self._samples(run_id, state)
        yield from self._log(run_id, state)
        seen = (summary.last_event_t, summary.step)
        if seen != state.lora_seen:
            state.lora_seen = seen
            yield from self._lora(run_id, state)
        yield from self._alerts(summary, state, fresh)

    def _points(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        # A series that grew by more than the cap in one change (a large run copied in) is
        # left out, not cut: the client sees the gap in i0 and refetches it over HTTP. The
        # core's limit hands back only the last `limit` points of such a series.
        limit = self.max_stream_points + 1
        generation, grown = self.monitor.points_since(run_id, dict(state.counts), limit=limit)
        if generation != state.generation:
            # reset between the summary and this call: stream the new generation from 0
            state.generation, state.counts, state.markers = generation, {}, 0
            state.samples = 0
            state.catch_up = True
            generation, grown = self.monitor.points_since(run_id, {}, limit=limit)
        series: dict[str, Any] = {}
        for name, cols in grown.items():
            i0, n = int(cols["i0"]), len(cols["step"])
            held = state.counts.get(name, 0)
            state.counts[name] = i0 + n
            if n and i0 == held and n <= self.max_stream_points:
                series[name] = {**cols, "t": known_times(cols["t"])}
        if series:
            yield (
                {"type": "points", "run": run_id, "generation": generation, "series": series},
                run_id,
            )

    def _samples(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        generation, i0, events = self.monitor.samples_since(
            run_id, state.samples, limit=MAX_STREAM_SAMPLES + 1
        )
        if generation != state.generation:
            return  # reset since the points were read: the change that says so comes next
        count = i0 + len(events)
        if count <= state.samples:
            return
        many = len(events) > MAX_STREAM_SAMPLES or (
            len(events) > 1 and _chars(events) > MAX_STREAM_SAMPLE_CHARS
        )
        if i0 != state.samples or many:
            # too many at once: announce the count; the client fetches them over HTTP
            i0, events = count, []
        state.samples = count
        message = {
            "type": "samples",
            "run": run_id,
            "generation": generation,
            "i0": i0,
            "count": count,
            "events": events,
        }
        yield message, run_id

    def _log(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        generation, i0, lines = self.monitor.log_since(run_id, state.log, MAX_LOG_LINES)
        if generation != state.generation or not lines:
            return  # a reset meanwhile: the next change streams the new generation
        state.log = i0 + len(lines)
        if self.log_wanted(run_id):
            message = {
                "type": "log",
                "run": run_id,
                "generation": generation,
                "i0": i0,
                "lines": lines,
            }
            yield message, run_id

    def _lora(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        # the caller skips changes without a new event: only those can hold a new snapshot
        row = self.monitor.last_lora(run_id)
        key = _lora_key(row)
        if row is None or key == state.lora_last:
            return
        state.lora_last = key
        yield {"type": "lora", "run": run_id, "step": row.step, "layers": row.layers}, run_id

    def _alerts(self, summary: RunSummary, state: RunCursor, fresh: bool) -> Iterator[Message]:
        run_id = summary.id
        markers = self.monitor.markers_since(run_id, state.markers) or []
        state.markers += len(markers)
        news = [m for m in markers if m.get("kind") in ALERT_MARKERS]
        if state.catch_up:
            state.catch_up = False
            now = _now(summary)
            news = [m for m in news if now is not None and _age(m.get("t"), now) <= FRESH_S]
        for m in news[:MAX_MARKER_ALERTS]:
            yield alert(run_id, m["kind"], m.get("step"), m.get("t"), marker_message(m)), None
        if len(news) > MAX_MARKER_ALERTS:
            rest = news[MAX_MARKER_ALERTS:]
            last = rest[-1]
            kinds = ", ".join(sorted({str(m["kind"]) for m in rest}))
            message = f"and {len(rest)} more ({kinds}) up to step {last.get('step')}"
            yield alert(run_id, last["kind"], last.get("step"), last.get("t"), message), None
        status = summary.status
        if status != state.status:
            recent = (summary.last_event_age_s or 0.0) <= FRESH_S
            if status in ALERT_STATUSES and (not fresh or recent):
                message = status_message(summary)
                yield alert(run_id, status, summary.step, summary.last_event_t, message), None
            state.status = status


def news_message(item: NewsItem) -> dict[str, Any]:
    """A piece of news (notify/news.py) for the wire: what the desktop notifications announce."""
    return {
        "type": "news",
        "run": item.run,
        "rule": item.rule,
        "step": item.step,
        "t": known_time(item.event_t),
        "message": item.message,
    }


def alert(run: str, kind: str, step: Any, t: Any, message: str) -> dict[str, Any]:
    return {
        "type": "alert",
        "run": run,
        "kind": kind,
        "step": step,
        "t": known_time(t),
        "message": message,
    }


def known_time(t: Any) -> float | None:
    """A unix time, or None when unknown (the core holds an unknown time as NaN)."""
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
        return float(t)
    return None


def markers_json(markers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Markers for the wire: an unknown time is null, as everywhere (the core holds NaN)."""
    return [{**m, "t": known_time(m.get("t"))} for m in markers]


def known_times(values: list[Any]) -> list[Any]:
    """A time column with unknown times (NaN in the core) as None: `null` on the wire, unlike a
    non-finite value, which stays a string."""
    try:
        if math.isfinite(sum(values, 0.0)):  # the common case: every time known, no copy
            return values
    except (TypeError, ValueError, OverflowError):
        pass
    return [known_time(t) for t in values]


def _now(summary: RunSummary) -> float | None:
    # the clock the summary was made with (the core's, so a test clock works too)
    t, age = summary.last_event_t, summary.last_event_age_s
    if t is None or age is None:
        return None
    return float(t) + float(age)


def _age(t: Any, now: float) -> float:
    known = known_time(t)
    return math.inf if known is None else now - known


def marker_message(m: dict[str, Any]) -> str:
    detail = m.get("detail") or ""
    if detail:
        return str(detail)
    series = m.get("series") or "value"
    what = "is not finite" if m.get("kind") == "nonfinite" else "spiked"
    return f"{series} {what} at step {m.get('step')}"


def status_message(summary: RunSummary) -> str:
    status = summary.status
    step = summary.step
    if status == "stalled":
        age = summary.last_event_age_s
        return f"no event for {age:.0f} s at step {step}" if age else f"stalled at step {step}"
    if status == "crashed":
        return f"process {summary.pid} ended without an end event at step {step}"
    if status == "failed" and summary.error:
        return f"failed at step {step}: {summary.error}"
    return f"{status} at step {step}"


def _chars(events: list[dict[str, Any]]) -> int:
    return sum(
        len(item.get(f) or "")
        for e in events
        for item in e.get("items") or ()
        for f in ("prompt", "completion", "reference")
    )


def _lora_key(row: LoraRow | None) -> tuple[int, float] | None:
    """What identifies a LoRA snapshot: its step and time."""
    return None if row is None else (row.step, row.t)


# -- GPUs ------------------------------------------------------------------------------------


# the attribution another listener already made of this very sample list, or None
KnownAttribution = Callable[[list[GpuSample]], "Mapping[int, Attribution] | None"]


class GpuView:
    """The sampler's state as the protocol shows it (`/api/gpus`, snapshot, `gpus` messages)."""

    def __init__(
        self,
        backend: GpuBackend | None,
        sampler: SampleFeed | None,
        known_attribution: KnownAttribution | None = None,
    ) -> None:
        self.backend = backend
        self.sampler = sampler
        self.known_attribution = known_attribution

    def payload(
        self, monitor: RunQueries, samples: list[GpuSample] | None = None, history: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            **backend_json(self.backend),
            "t": None,
            "devices": [],
            "attribution": {},
        }
        if self.sampler is None:
            return out
        if samples is None:
            samples = list(self.sampler.latest())
        out["devices"] = [s.to_dict() for s in samples]
        out["t"] = max((s.t for s in samples), default=None)
        known = self.known_attribution(samples) if self.known_attribution is not None else None
        if known is not None:  # the efficiency tracker attributed this tick already
            out["attribution"] = {str(i): attribution_json(a) for i, a in known.items()}
        else:
            out["attribution"] = attribution_dict(samples, monitor.summaries())
        if history:
            out["history"] = {
                str(s.index): history_columns(self.sampler.history(s.index)) for s in samples
            }
        return out


HISTORY_FIELDS = ("t", "util_pct", "mem_used_bytes", "temperature_c", "power_w")


def history_columns(samples: Sequence[GpuSample]) -> dict[str, list[Any]]:
    return {f: [getattr(s, f, None) for s in samples] for f in HISTORY_FIELDS}


def attribution_dict(
    samples: Sequence[GpuSample],
    runs: Iterable[RunSummary | Mapping[str, Any]],
    **attribute_kw: Any,
) -> dict[str, Any]:
    """Per device index (as a string key): `runs` (ids), `evidence` (how each run was found,
    its processes and memory), `others` (processes of no run) and their memory."""
    return {
        str(index): attribution_json(attr)
        for index, attr in attribute(samples, runs, **attribute_kw).items()
    }
