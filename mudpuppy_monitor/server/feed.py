"""From the core's change notices to protocol messages: summaries, points, LoRA, alerts, GPUs.

The hub publishes; this module decides what to say. Per run it keeps the cursor of the points
already streamed (so every point is sent once, in order, and `i0` tells a client where it
belongs), the number of markers already seen, and the last status (for alerts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# statuses worth telling the user about when a run enters them
ALERT_STATUSES = frozenset({"stalled", "crashed", "completed", "failed", "interrupted"})
# markers that are alerts; `end` is told by its status change, checkpoints/restarts are not news
ALERT_MARKERS = frozenset({"nonfinite", "spike"})
# a run first seen in a final state long after it ended is history, not news
FRESH_S = 60.0

Message = tuple[dict[str, Any], "str | None"]


@dataclass
class RunCursor:
    generation: Any = None
    counts: dict[str, int] = field(default_factory=dict)
    markers: int = 0
    status: str | None = None
    lora_steps: int = 0


class ChangeTracker:
    def __init__(self, monitor: Any, max_stream_points: int = 5000) -> None:
        self.monitor = monitor
        self.max_stream_points = max_stream_points
        self.runs: dict[str, RunCursor] = {}

    def prime(self) -> None:
        """Start from what exists now: history is for HTTP, the stream carries what is new."""
        for s in self.monitor.summaries():
            self.runs[s.id] = self._cursor_now(s)

    def _cursor_now(self, summary: Any) -> RunCursor:
        detail = self.monitor.detail(summary.id) or {}
        return RunCursor(
            generation=summary.generation,
            counts=series_counts(self.monitor, summary.id, detail),
            markers=len(detail.get("markers") or ()),
            status=summary.status,
            lora_steps=_lora_steps(self.monitor, summary.id, detail),
        )

    def messages(self, changes: Any) -> Iterator[Message]:
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

    def _run_messages(self, summary: Any) -> Iterator[Message]:
        run_id = summary.id
        state = self.runs.get(run_id)
        fresh = state is None
        if state is None or state.generation != summary.generation:
            # new run, or reset (truncated, replaced, recreated): stream it from its start
            state = RunCursor(generation=summary.generation)
            self.runs[run_id] = state
        yield from self._points(run_id, state)
        yield from self._lora(run_id, state)
        yield from self._alerts(summary, state, fresh)

    def _points(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        generation, grown = self.monitor.points_since(run_id, dict(state.counts))
        if generation != state.generation:
            # reset between the summary and this call: the next change streams it afresh
            state.generation, state.counts = generation, {}
            generation, grown = self.monitor.points_since(run_id, {})
        if not grown:
            return
        total = 0
        series: dict[str, Any] = {}
        for name, cols in grown.items():
            n = len(cols["step"])
            state.counts[name] = int(cols["i0"]) + n
            total += n
            if n:
                series[name] = cols
        if series and total <= self.max_stream_points:
            yield (
                {"type": "points", "run": run_id, "generation": generation, "series": series},
                run_id,
            )
        # else: too much at once (a large run copied in); clients see the gap in i0 and refetch

    def _lora(self, run_id: str, state: RunCursor) -> Iterator[Message]:
        lora = (
            self.monitor.lora(run_id, points=1_000_000) if _has_lora(self.monitor, run_id) else None
        )
        steps = list((lora or {}).get("steps") or [])
        if len(steps) <= state.lora_steps:
            return
        state.lora_steps = len(steps)
        j = len(steps) - 1
        layers: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(lora.get("layers") or []):  # type: ignore[union-attr]
            layers[name] = {k: _cell(lora, k, i, j) for k in ("A", "B", "update")}
        yield {"type": "lora", "run": run_id, "step": steps[j], "layers": layers}, run_id

    def _alerts(self, summary: Any, state: RunCursor, fresh: bool) -> Iterator[Message]:
        run_id = summary.id
        markers = self.monitor.markers_since(run_id, state.markers) or []
        state.markers += len(markers)
        for m in markers:
            if m.get("kind") in ALERT_MARKERS:
                yield alert(run_id, m["kind"], m.get("step"), m.get("t"), marker_message(m)), None
        status = summary.status
        if status != state.status:
            recent = (summary.last_event_age_s or 0.0) <= FRESH_S
            if status in ALERT_STATUSES and (not fresh or recent):
                yield (
                    alert(
                        run_id,
                        status,
                        summary.step,
                        summary.last_event_t,
                        status_message(summary),
                    ),
                    None,
                )
            state.status = status


def alert(run: str, kind: str, step: Any, t: Any, message: str) -> dict[str, Any]:
    return {"type": "alert", "run": run, "kind": kind, "step": step, "t": t, "message": message}


def marker_message(m: dict[str, Any]) -> str:
    detail = m.get("detail") or ""
    if detail:
        return str(detail)
    series = m.get("series") or "value"
    what = "is not finite" if m.get("kind") == "nonfinite" else "spiked"
    return f"{series} {what} at step {m.get('step')}"


def status_message(summary: Any) -> str:
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


def series_counts(
    monitor: Any, run_id: str, detail: dict[str, Any] | None = None
) -> dict[str, int]:
    """How many points each series of a run holds now."""
    if detail is None:
        detail = monitor.detail(run_id) or {}
    names = list(detail.get("series") or [])
    if not names:
        return {}
    got = monitor.series(run_id, names, x="step", points=2)
    return {name: int(s["count"]) for name, s in got.items()}


def _has_lora(monitor: Any, run_id: str) -> bool:
    detail = monitor.detail(run_id) or {}
    return bool(detail.get("lora_layers"))


def _lora_steps(monitor: Any, run_id: str, detail: dict[str, Any]) -> int:
    if not detail.get("lora_layers"):
        return 0
    lora = monitor.lora(run_id, points=1_000_000) or {}
    return len(lora.get("steps") or [])


def _cell(lora: dict[str, Any], key: str, i: int, j: int) -> Any:
    try:
        return lora[key][i][j]
    except (KeyError, IndexError, TypeError):
        return None


# -- GPUs ------------------------------------------------------------------------------------


class GpuView:
    """The sampler's state as the protocol shows it (`/api/gpus`, snapshot, `gpus` messages)."""

    def __init__(self, backend: Any | None, sampler: Any | None) -> None:
        self.backend = backend
        self.sampler = sampler

    def payload(self, monitor: Any, samples: list[Any] | None = None, history: bool = False):
        backend = self.backend
        out: dict[str, Any] = {
            "backend": getattr(backend, "kind", "none"),
            "name": getattr(backend, "name", "none"),
            "simulated": bool(getattr(backend, "simulated", False)),
            "reason": getattr(backend, "reason", "") or "",
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
        out["attribution"] = attribution_dict(samples, monitor.summaries())
        if history:
            out["history"] = {
                str(s.index): history_columns(self.sampler.history(s.index)) for s in samples
            }
        return out


HISTORY_FIELDS = ("t", "util_pct", "mem_used_bytes", "temperature_c", "power_w")


def history_columns(samples: list[Any]) -> dict[str, list[Any]]:
    return {f: [getattr(s, f, None) for s in samples] for f in HISTORY_FIELDS}


def attribution_dict(samples: list[Any], runs: Any) -> dict[str, Any]:
    """Per device index (as a string key): `runs` (ids), `evidence` (how each run was found,
    its processes and memory), `others` (processes of no run) and their memory."""
    from mudpuppy_monitor.gpu import attribute

    out: dict[str, Any] = {}
    for index, attr in attribute(samples, runs).items():
        out[str(index)] = {
            "runs": list(attr.run_ids),
            "evidence": [r.to_dict() for r in attr.runs],
            "others": [p.to_dict() for p in attr.others],
            "others_used_bytes": attr.others_used_bytes,
        }
    return out
