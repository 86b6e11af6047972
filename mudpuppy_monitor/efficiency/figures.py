"""The pure half of live efficiency: a run's FLOPs per token from its meta, the peak of the
devices it runs on, MFU with the reason when it is unknown, and the one-line note a summary
carries. No state, no threads (the tracker holds those).

docs/efficiency.md has the formulas and what every reason means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mudpuppy_monitor.core.flops import FlopsEstimate, ModelShape, mfu, training_flops_per_token
from mudpuppy_monitor.gpu.peaks import peak_flops

__all__ = [
    "DevicePeak",
    "MfuAnswer",
    "RunModel",
    "compute_mfu",
    "device_peaks",
    "efficiency_note",
    "run_model",
]

# labels of the three summary fields in a note
LABELS = {"mfu": "MFU", "joules_per_token": "J/token", "energy_kwh": "energy"}
NO_FLOPS = "FLOPs per token unknown"


@dataclass(frozen=True, slots=True)
class RunModel:
    """What the meta says about the work of one token and the precision of the run."""

    flops: FlopsEstimate | None  # None: no parameter counts at all
    precision: str | None  # config.precision as written ("bf16", "fp16", "fp32", ...)

    @property
    def flops_per_token(self) -> float | None:
        return None if self.flops is None else self.flops.flops_per_token

    @property
    def flops_reason(self) -> str | None:
        if self.flops is None:
            return f"{NO_FLOPS}: the run's meta has no model_shape and no parameter counts"
        if self.flops.flops_per_token is None:
            return f"{NO_FLOPS}: {self.flops.reason}"
        return None


def run_model(meta: Mapping[str, Any]) -> RunModel:
    shape = ModelShape.from_meta(meta)
    flops = training_flops_per_token(shape) if shape is not None else None
    config = meta.get("config") if isinstance(meta, Mapping) else None
    precision = config.get("precision") if isinstance(config, Mapping) else None
    return RunModel(flops, precision if isinstance(precision, str) and precision else None)


@dataclass(frozen=True, slots=True)
class DevicePeak:
    """One device a run is on, and its dense peak for the run's precision (None: unknown)."""

    uuid: str
    index: int
    name: str
    flops: float | None
    source: str | None  # the vendor page, or "--peak-tflops"
    reason: str | None = None  # why `flops` is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "name": self.name,
            "peak_flops": self.flops,
            "source": self.source,
            "reason": self.reason,
        }


def device_peaks(
    devices: Sequence[tuple[str, int, str]],
    precision: str | None,
    override_tflops: float | None,
) -> list[DevicePeak]:
    """The peak of each (uuid, index, name) device: `override_tflops` (per device) when given,
    else the table's dense peak for `precision`; never a guess."""
    out = []
    for uuid, index, name in devices:
        if override_tflops is not None:
            out.append(DevicePeak(uuid, index, name, override_tflops * 1e12, "--peak-tflops"))
            continue
        if precision is None:
            reason = "the run's precision is unknown (no config.precision in its meta)"
            out.append(DevicePeak(uuid, index, name, None, None, reason))
            continue
        try:
            peak = peak_flops(name, precision)
        except ValueError:
            reason = f"no peak for precision {precision!r}: the table has bf16 and fp16"
            out.append(DevicePeak(uuid, index, name, None, None, reason))
            continue
        if peak is None:
            reason = f"no tabulated {precision} peak for {name!r}"
            out.append(DevicePeak(uuid, index, name, None, None, reason))
        else:
            out.append(DevicePeak(uuid, index, name, peak.flops, peak.source))
    return out


@dataclass(frozen=True, slots=True)
class MfuAnswer:
    value: float | None
    reason: str | None
    peak_flops_total: float | None = None


def compute_mfu(
    tokens_per_s: float | None, model: RunModel, peaks: Sequence[DevicePeak]
) -> MfuAnswer:
    """Achieved model FLOP/s (tokens/s x FLOPs per token) over the summed peak of `peaks`."""
    if tokens_per_s is None:
        return MfuAnswer(None, "no tokens/s: the run logs no token count over the last minute")
    if model.flops_reason is not None:
        return MfuAnswer(None, model.flops_reason)
    if not peaks:
        return MfuAnswer(None, "no GPU attributed to the run")
    unknown = [p for p in peaks if p.flops is None]
    if unknown:
        reason = unknown[0].reason or "peak unknown"
        return MfuAnswer(None, f"{reason} (give one with --peak-tflops)")
    total = sum(p.flops for p in peaks if p.flops is not None)
    fpt = model.flops_per_token
    assert fpt is not None
    value = mfu(tokens_per_s, fpt, total / len(peaks), len(peaks))
    if value is None:
        return MfuAnswer(None, "tokens/s is not positive", total)
    return MfuAnswer(value, None, total)


def efficiency_note(reasons: Mapping[str, str]) -> str | None:
    """One line for a summary: the reason alone when all three fields are unknown for the same
    one, else each unknown field's reason after its label. None when nothing is unknown."""
    if not reasons:
        return None
    distinct = set(reasons.values())
    if len(distinct) == 1 and set(reasons) == set(LABELS):
        return next(iter(distinct))
    return "; ".join(f"{LABELS.get(k, k)}: {v}" for k, v in reasons.items())
