"""EfficiencyTracker: where runs meet GPU samples for MFU, J/token and kWh, live.

Fed one call per GPU sampler tick (`observe`, a sampler listener: the sampler's thread), it
attributes the devices to runs (gpu/attribution.py decides), feeds each run's energy record,
reads the run's new token counts from the core, and hands the core the completed intervals as
the run's series `efficiency/mfu` and `efficiency/joules_per_token` (Monitor.add_derived). As
the core's `SummaryAnnotator` it fills every summary's `mfu`, `joules_per_token`, `energy_kwh`
and `efficiency_note`, and the detail's `efficiency` object.

Threads: `observe` runs on the sampler thread; `summary`/`detail` on whichever thread asks the
core, under the core's lock. Both take this tracker's lock, and `observe` never holds it while it
calls the core, so the two locks are always taken in the order core -> tracker.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mudpuppy_monitor.core.energy import JOULES_PER_KWH
from mudpuppy_monitor.core.protocols import DerivedRuns
from mudpuppy_monitor.core.run import RATE_WINDOW_S, TOKEN_KEYS
from mudpuppy_monitor.core.summary import RunSummary
from mudpuppy_monitor.efficiency.figures import (
    DevicePeak,
    RunModel,
    compute_mfu,
    device_peaks,
    efficiency_note,
    run_model,
)
from mudpuppy_monitor.efficiency.runstate import RunEnergy, TokenPoint
from mudpuppy_monitor.gpu.attribution import attribute
from mudpuppy_monitor.gpu.records import GpuSample

__all__ = ["JPT_SERIES", "MFU_SERIES", "SERIES", "EfficiencyTracker"]

MFU_SERIES = "efficiency/mfu"
JPT_SERIES = "efficiency/joules_per_token"
SERIES = (MFU_SERIES, JPT_SERIES)
ENDED = frozenset({"completed", "failed", "interrupted", "crashed"})
MAX_TOKEN_READ = 10_000  # token points read per run and tick (a backlog: only its tail)
KWH_CHANGE = 1e-3  # a relative kWh change worth telling clients about


class EfficiencyTracker:
    def __init__(
        self,
        runs: DerivedRuns,
        *,
        sampling: bool,
        sampling_reason: str = "",
        peak_tflops: float | None = None,
        interval_s: float = 10.0,
        window_s: float = RATE_WINDOW_S,
        max_gap_s: float = 60.0,
        hostname: str | None = None,
        attribute_fn: Callable[..., Mapping[int, Any]] = attribute,
    ) -> None:
        if peak_tflops is not None and not (math.isfinite(peak_tflops) and peak_tflops > 0):
            raise ValueError(f"peak_tflops must be a positive number, got {peak_tflops!r}")
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be a positive number, got {interval_s!r}")
        self.runs = runs
        self.sampling = sampling
        self.sampling_reason = sampling_reason
        self.peak_tflops = peak_tflops
        self.interval_s = interval_s
        self.window_s = window_s
        self.max_gap_s = max_gap_s
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self._attribute = attribute_fn
        self._lock = threading.Lock()
        self._state: dict[str, RunEnergy] = {}
        self._last_attribution: tuple[list[GpuSample], Mapping[int, Any]] | None = None
        self._models: dict[str, tuple[Mapping[str, Any], RunModel]] = {}
        self._told: dict[str, tuple[Any, ...]] = {}  # what clients last heard, per run
        # peaks of a set of devices at a precision: the table lookup tokenizes the names
        self._peaks: dict[
            tuple[tuple[tuple[str, int, str], ...], str | None], list[DevicePeak]
        ] = {}
        self.ticks = 0

    # -- the sampler side ---------------------------------------------------------------

    def observe(self, samples: list[GpuSample]) -> None:
        """One sampler tick: attribute, account, read tokens, publish intervals and figures."""
        if not samples:
            return
        summaries = self.runs.summaries()
        gens = {s.id: s.generation for s in summaries}
        on: dict[str, list[GpuSample]] = {}
        by_index = {s.index: s for s in samples}
        attribution = self._attribute(samples, summaries, hostname=self.hostname)
        self._last_attribution = (samples, attribution)
        for index, att in attribution.items():
            for run_id in att.run_ids:
                on.setdefault(run_id, []).append(by_index[index])
        t = max(s.t for s in samples)
        with self._lock:
            self.ticks += 1
            for run_id in [r for r in {*self._state, *self._models} if r not in gens]:
                self._forget(run_id)
            for run_id, devs in on.items():
                state = self._state.get(run_id)
                if state is None or state.generation != gens[run_id]:
                    state = self._state[run_id] = RunEnergy(
                        gens[run_id],
                        interval_s=self.interval_s,
                        window_s=self.window_s,
                        max_gap_s=self.max_gap_s,
                    )
                state.observe(t, devs)
            reads = [(r, st.generation, st.token_key, st.cursor) for r, st in self._state.items()]
        tokens = {
            run_id: self._read_tokens(run_id, key, cursor) for run_id, _, key, cursor in reads
        }
        emits: list[tuple[str, int, list[tuple[int, float, dict[str, float]]]]] = []
        changed: list[str] = []
        with self._lock:
            for run_id, generation, _, _ in reads:
                state = self._state.get(run_id)
                if state is None or state.generation != generation:
                    continue
                got = tokens[run_id]
                if got is not None:
                    key, gen, cursor, points = got
                    if gen != generation:
                        continue  # reset between the tick and the read: the next tick starts over
                    state.token_key, state.cursor = key, cursor
                    state.add_tokens(points)
                model = self._models.get(run_id, (None, None))[1]
                points_out = []
                for iv, mfu_value in state.advance(self._mfu_of(state, model)):
                    values: dict[str, float] = {}
                    if mfu_value is not None:
                        values[MFU_SERIES] = mfu_value
                    if iv.per_token.value is not None:
                        values[JPT_SERIES] = iv.per_token.value
                    points_out.append((iv.end.step, iv.end.t, values))
                if points_out:
                    emits.append((run_id, generation, points_out))
                told = self._figures_key(state)
                if told != self._told.get(run_id):
                    self._told[run_id] = told
                    changed.append(run_id)
        for run_id, generation, points_out in emits:
            self.runs.add_derived(run_id, generation, points_out)
        if changed:
            self.runs.notify_updated(changed)

    def attribution_of(self, samples: list[GpuSample]) -> Mapping[int, Any] | None:
        """The attribution this tracker made of exactly these samples (the same list a sampler
        hands every listener), so another listener of the same tick need not make it again."""
        last = self._last_attribution
        return last[1] if last is not None and last[0] is samples else None

    def _read_tokens(
        self, run_id: str, key: str | None, cursor: int
    ) -> tuple[str, int, int, list[TokenPoint]] | None:
        """(series, generation, new cursor, points) of the run's token count read since
        `cursor`; the first read takes only the tail of a backlog."""
        keys = [key] if key is not None else list(TOKEN_KEYS)
        gen, grown = self.runs.points_since(
            run_id, {k: cursor for k in keys}, names=keys, limit=MAX_TOKEN_READ
        )
        found = next((k for k in keys if k in grown), None)
        if found is None:
            return None
        cols = grown[found]
        points = [
            TokenPoint(float(t), float(v), int(step))
            for step, t, v in zip(cols["step"], cols["t"], cols["y"], strict=True)
        ]
        return found, gen, int(cols["i0"]) + len(points), points

    def _mfu_of(
        self, state: RunEnergy, model: RunModel | None
    ) -> Callable[[float, Sequence[str]], float | None]:
        def mfu_of(tokens_per_s: float, devices: Sequence[str]) -> float | None:
            if model is None:
                return None
            peaks = self._device_peaks(state, devices, model.precision)
            return compute_mfu(tokens_per_s, model, peaks).value

        return mfu_of

    def _forget(self, run_id: str) -> None:
        self._state.pop(run_id, None)
        self._models.pop(run_id, None)
        self._told.pop(run_id, None)

    def _device_peaks(
        self, state: RunEnergy, uuids: Sequence[str], precision: str | None
    ) -> list[DevicePeak]:
        devices = tuple((u, *state.names.get(u, (-1, "unknown device"))) for u in uuids)
        key = (devices, precision)
        peaks = self._peaks.get(key)
        if peaks is None:
            if len(self._peaks) > 1024:  # device sets come and go with runs
                self._peaks.clear()
            peaks = self._peaks[key] = device_peaks(devices, precision, self.peak_tflops)
        return peaks

    @staticmethod
    def _figures_key(state: RunEnergy) -> tuple[Any, ...]:
        recent = state.recent.value if state.recent is not None else None
        joules = state.totals().joules
        # kWh moves every tick while a run is on a GPU: tell clients when it moved visibly
        bucket = math.floor(math.log(joules) / math.log1p(KWH_CHANGE)) if joules > 0 else None
        return (recent, state.recent_reason, state.current, bucket)

    # -- the core's side (SummaryAnnotator) -----------------------------------------------

    def summary(self, summary: RunSummary, meta: Mapping[str, Any]) -> RunSummary:
        with self._lock:
            figures = self._figures(summary, meta)
        return summary.with_efficiency(
            figures["mfu"],
            figures["joules_per_token"],
            figures["energy_kwh"],
            efficiency_note(figures["reasons"]),
        )

    def detail(self, summary: RunSummary, meta: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            figures = self._figures(summary, meta)
            state = self._live_state(summary)
            model = self._model(summary.id, meta)
            peaks = figures.pop("_peaks")
            out: dict[str, Any] = {
                **figures,
                "tokens_per_s": summary.tokens_per_s,
                "tokens_per_s_per_device": (
                    summary.tokens_per_s / len(peaks)
                    if summary.tokens_per_s is not None and peaks
                    else None
                ),
                "flops_per_token": model.flops_per_token,
                "flops": None if model.flops is None else model.flops.to_dict(),
                "precision": model.precision,
                "peak_tflops_override": self.peak_tflops,
                "devices": [p.to_dict() for p in peaks],
                "window": None,
                "energy": None,
                "simulated": False,
                "since_t": None,
                "last_seen_t": None,
                "intervals": 0,
                "interval_s": self.interval_s,
                "window_s": self.window_s,
                "series": list(SERIES),
            }
            if state is not None:
                recent = state.recent
                if recent is not None and recent.interval is not None:
                    out["window"] = {**recent.interval.to_dict(), "tokens": recent.tokens}
                out["energy"] = state.totals().to_dict()
                out["simulated"] = state.simulated
                out["since_t"] = state.since
                out["last_seen_t"] = state.last_seen
                out["intervals"] = state.intervals
            return out

    def _model(self, run_id: str, meta: Mapping[str, Any]) -> RunModel:
        cached = self._models.get(run_id)
        if cached is not None and cached[0] is meta:  # the core replaces meta when it changes
            return cached[1]
        model = run_model(meta)
        self._models[run_id] = (meta, model)
        return model

    def _live_state(self, summary: RunSummary) -> RunEnergy | None:
        state = self._state.get(summary.id)
        return state if state is not None and state.generation == summary.generation else None

    def _figures(self, summary: RunSummary, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Values and reasons of the three fields (called with the lock held)."""
        model = self._model(summary.id, meta)
        state = self._live_state(summary)
        reasons: dict[str, str] = {}
        out: dict[str, Any] = {
            "mfu": None,
            "joules_per_token": None,
            "energy_kwh": None,
            "reasons": reasons,
            "_peaks": [],
        }
        absent = self._absent_reason(summary, state)
        if absent is not None:
            reasons.update(mfu=absent, joules_per_token=absent, energy_kwh=absent)
            return out
        assert state is not None
        peaks = self._device_peaks(state, state.current, model.precision)
        out["_peaks"] = peaks
        mfu = compute_mfu(summary.tokens_per_s, model, peaks)
        out["mfu"] = mfu.value
        if mfu.reason is not None:
            reasons["mfu"] = mfu.reason
        if state.recent is not None and state.recent.value is not None:
            out["joules_per_token"] = state.recent.value
        elif state.token_key is None and summary.tokens_per_s is None:
            reasons["joules_per_token"] = "no token count: the run logs no tokens_seen"
        else:
            reasons["joules_per_token"] = state.recent_reason or "unknown"
        totals = state.totals()
        if totals.method is None:
            reasons["energy_kwh"] = (
                "the run's GPUs report neither an energy counter nor power"
                if state.ticks >= 2
                else "waiting for a second energy reading"
            )
        else:
            out["energy_kwh"] = totals.joules / JOULES_PER_KWH
        return out

    def _absent_reason(self, summary: RunSummary, state: RunEnergy | None) -> str | None:
        """Why nothing can be said about the run's GPUs at all, or None."""
        if not self.sampling:
            why = f" ({self.sampling_reason})" if self.sampling_reason else ""
            return f"no GPU sampling{why}"
        if state is not None:
            return None
        if summary.host and summary.host != self.hostname:
            return f"the run is on another host ({summary.host}): its GPUs are not sampled here"
        if summary.status in ENDED:
            return "the run ended before the daemon saw it on a GPU"
        return (
            "no GPU attributed to the run (no device UUID in its meta, and no process on a GPU is"
            " its pid, parent or sibling)"
        )
