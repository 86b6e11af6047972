"""Energy of one run: per-GPU energy counters (or integrated power), J/token, kWh. Pure.

An `EnergyAccountant` is fed the samples of the devices attributed to one run, one
`add(device, t, energy_j=..., power_w=...)` per device per sampler tick. It keeps, per device, a
piecewise-linear cumulative energy curve (time, joules) built from:

- the energy counter (joules, monotonic): each reading adds its difference to the last reading.
  A missing reading is not a loss: the next one covers the whole stretch, as long as it comes
  within `max_gap_s`. A reading below the previous one is a reset (driver reload, GPU reset):
  that stretch is estimated from power instead, and counted in `resets`.
- power, where the device has no counter (or it lapsed for longer than `max_gap_s`, or reset):
  the trapezoid between consecutive power readings, skipping missing ones when the readings on
  both sides are within `max_gap_s`. Such energy is flagged (`power_j`, `from_power_s`).
- anything else is a gap: no energy is invented for it, and an interval that overlaps a gap is
  not `complete`, so J/token over it is None with the reason.

Timestamps must increase per device; a sample at or before the last one is dropped and counted
(`rejected`). Non-finite or negative readings are treated as missing. Not thread-safe: feed it
from one thread. Memory: 17 bytes per device-sample (`trim_before` drops old points).
Formulas, units and the vendor APIs behind the counters are in docs/efficiency.md.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JOULES_PER_KWH",
    "EnergyAccountant",
    "EnergyInterval",
    "EnergyTotals",
    "PerToken",
]

JOULES_PER_KWH = 3.6e6

# kind of the segment that ends at a point
_COUNTER, _POWER, _GAP = 0, 1, 2


@dataclass(frozen=True, slots=True)
class EnergyInterval:
    """Energy of the run's devices over [t0, t1]."""

    t0: float
    t1: float
    joules: float  # measured energy (gaps contribute nothing)
    devices: int  # devices with samples overlapping the interval
    complete: bool  # every such device measured all of it (counter or power)
    uncovered_s: float  # device-seconds of the interval without a measurement
    from_power_s: float  # device-seconds estimated by integrating power

    @property
    def method(self) -> str | None:
        """How the measured part was measured: "counter", "power", "mixed" or None."""
        measured = (self.t1 - self.t0) * self.devices - self.uncovered_s
        if self.devices == 0 or measured <= 0:
            return None
        if self.from_power_s <= 0:
            return "counter"
        return "power" if self.from_power_s >= measured - 1e-9 else "mixed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "t0": self.t0,
            "t1": self.t1,
            "joules": self.joules,
            "devices": self.devices,
            "complete": self.complete,
            "uncovered_s": self.uncovered_s,
            "from_power_s": self.from_power_s,
            "method": self.method,
        }


@dataclass(frozen=True, slots=True)
class PerToken:
    """J/token over an interval; `value` is None with a `reason` when it cannot be known."""

    value: float | None
    joules: float | None
    tokens: float | None
    interval: EnergyInterval | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class EnergyTotals:
    joules: float
    counter_j: float  # from energy counters
    power_j: float  # estimated by integrating power
    devices: int
    resets: int  # counter readings that went backwards
    gaps: int  # stretches with no measurement
    gap_s: float  # their device-seconds
    rejected: int  # samples dropped (time not increasing, not finite)

    @property
    def kwh(self) -> float:
        return self.joules / JOULES_PER_KWH

    @property
    def method(self) -> str | None:
        if self.counter_j <= 0 and self.power_j <= 0:
            return None
        if self.power_j <= 0:
            return "counter"
        return "power" if self.counter_j <= 0 else "mixed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "kwh": self.kwh,
            "counter_j": self.counter_j,
            "power_j": self.power_j,
            "method": self.method,
            "devices": self.devices,
            "resets": self.resets,
            "gaps": self.gaps,
            "gap_s": self.gap_s,
            "rejected": self.rejected,
        }


# one device sample: (t, energy_j or None, power_w or None)
_Sample = tuple[float, float | None, float | None]


class _Track:
    """One device: the cumulative curve and the samples not yet accounted for."""

    __slots__ = ("ts", "es", "kinds", "frontier", "waiting", "counter_j", "power_j", "resets",
                 "gaps", "gap_s")  # fmt: skip

    def __init__(self, first: _Sample) -> None:
        self.ts = array("d", [first[0]])
        self.es = array("d", [0.0])
        self.kinds = array("b", [_GAP])
        self.frontier: _Sample = first  # the sample the curve has been accounted up to
        self.waiting: list[_Sample] = []  # later samples, not yet accounted
        self.counter_j = 0.0
        self.power_j = 0.0
        self.resets = 0
        self.gaps = 0
        self.gap_s = 0.0

    @property
    def last_t(self) -> float:
        return self.waiting[-1][0] if self.waiting else self.frontier[0]

    def extend(self, t: float, joules: float, kind: int) -> None:
        self.ts.append(t)
        self.es.append(self.es[-1] + joules)
        self.kinds.append(kind)
        if kind == _COUNTER:
            self.counter_j += joules
        else:
            self.power_j += joules

    def gap(self, t: float) -> None:
        self.gaps += 1
        self.gap_s += t - self.ts[-1]
        self.ts.append(t)
        self.es.append(self.es[-1])
        self.kinds.append(_GAP)

    def energy_at(self, t: float) -> float:
        ts, es = self.ts, self.es
        if t <= ts[0]:
            return es[0]
        if t >= ts[-1]:
            return es[-1]
        i = bisect_right(ts, t)  # ts[i-1] <= t < ts[i]
        t0, t1 = ts[i - 1], ts[i]
        return es[i - 1] + (es[i] - es[i - 1]) * (t - t0) / (t1 - t0)


class EnergyAccountant:
    """The energy of one run over the devices attributed to it (see the module docstring)."""

    def __init__(self, *, max_gap_s: float = 60.0) -> None:
        if not (math.isfinite(max_gap_s) and max_gap_s > 0):
            raise ValueError(f"max_gap_s must be a positive number, got {max_gap_s!r}")
        self.max_gap_s = max_gap_s
        self._tracks: dict[str, _Track] = {}
        self._rejected = 0

    # -- feeding ------------------------------------------------------------------------------

    def add(
        self,
        device: str,
        t: float,
        *,
        energy_j: float | None = None,
        power_w: float | None = None,
    ) -> None:
        """One sample of one device: its energy counter in joules and/or its power in watts."""
        if not _finite(t):
            self._rejected += 1
            return
        sample: _Sample = (float(t), _reading(energy_j), _reading(power_w))
        track = self._tracks.get(device)
        if track is None:
            self._tracks[device] = _Track(sample)
            return
        if sample[0] <= track.last_t:
            self._rejected += 1
            return
        track.waiting.append(sample)
        self._account(track, sample)

    def _account(self, track: _Track, s: _Sample) -> None:
        t, e, p = s
        ft, fe, _ = track.frontier
        if fe is not None:  # the device has a counter reading at the frontier
            if e is not None:
                if e >= fe and t - ft <= self.max_gap_s:
                    track.extend(t, e - fe, _COUNTER)
                    track.frontier, track.waiting = s, []
                    return
                if e < fe:
                    track.resets += 1
            elif t - ft <= self.max_gap_s:
                return  # a missing reading: the next one covers this stretch
            self._settle_by_power(track)
            return
        # no counter at the frontier: power, or wait for a reading of either kind
        if p is not None or e is not None or t - ft > self.max_gap_s:
            self._settle_by_power(track)

    def _settle_by_power(self, track: _Track) -> None:
        """Account every waiting sample by the trapezoid of power, gaps where it is unknown; the
        last waiting sample becomes the frontier."""
        prev = track.frontier if track.frontier[2] is not None else None
        for s in track.waiting:
            if s[2] is None:
                continue
            if prev is not None and s[0] - prev[0] <= self.max_gap_s:
                assert prev[2] is not None
                track.extend(s[0], (prev[2] + s[2]) / 2.0 * (s[0] - prev[0]), _POWER)
            else:
                track.gap(s[0])
            prev = s
        last = track.waiting[-1]
        if track.ts[-1] < last[0]:
            track.gap(last[0])
        track.frontier, track.waiting = last, []

    def trim_before(self, t: float) -> None:
        """Forget curve points before `t` (one is kept for interpolation); totals are kept."""
        for track in self._tracks.values():
            i = bisect_right(track.ts, t) - 1
            if i > 0:
                del track.ts[:i]
                del track.es[:i]
                del track.kinds[:i]

    # -- reading ------------------------------------------------------------------------------

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self._tracks)

    def totals(self) -> EnergyTotals:
        tracks = self._tracks.values()
        return EnergyTotals(
            joules=sum(tr.es[-1] for tr in tracks),
            counter_j=sum(tr.counter_j for tr in tracks),
            power_j=sum(tr.power_j for tr in tracks),
            devices=len(self._tracks),
            resets=sum(tr.resets for tr in tracks),
            gaps=sum(tr.gaps for tr in tracks),
            gap_s=sum(tr.gap_s for tr in tracks),
            rejected=self._rejected,
        )

    def covered_until(self) -> float | None:
        """The latest time every device's energy is accounted up to (None without samples): an
        interval ending later is not complete yet."""
        if not self._tracks:
            return None
        return min(tr.ts[-1] for tr in self._tracks.values())

    def interval(self, t0: float, t1: float) -> EnergyInterval:
        """The energy over [t0, t1] of the devices whose accounted curve overlaps it."""
        joules = uncovered = from_power = 0.0
        devices = 0
        for tr in self._tracks.values():
            ts = tr.ts
            if not (ts[0] < t1 and ts[-1] > t0):
                continue
            devices += 1
            joules += tr.energy_at(t1) - tr.energy_at(t0)
            uncovered += max(0.0, ts[0] - t0) + max(0.0, t1 - ts[-1])
            i = max(1, bisect_right(ts, t0))
            while i < len(ts) and ts[i - 1] < t1:
                overlap = min(ts[i], t1) - max(ts[i - 1], t0)
                if overlap > 0:
                    if tr.kinds[i] == _GAP:
                        uncovered += overlap
                    elif tr.kinds[i] == _POWER:
                        from_power += overlap
                i += 1
        return EnergyInterval(
            t0=t0,
            t1=t1,
            joules=joules,
            devices=devices,
            complete=devices > 0 and uncovered <= 1e-9,
            uncovered_s=uncovered,
            from_power_s=from_power,
        )

    def joules_per_token(self, t0: float, tokens0: float, t1: float, tokens1: float) -> PerToken:
        """J/token between two points of a run: (t0, tokens seen at t0) and (t1, at t1)."""
        if not all(_finite(v) for v in (t0, tokens0, t1, tokens1)):
            return PerToken(None, None, None, None, "time or token count not a number")
        if t1 <= t0:
            return PerToken(None, None, None, None, "empty interval")
        tokens = tokens1 - tokens0
        if tokens <= 0:
            return PerToken(None, None, tokens, None, "no tokens processed in the interval")
        iv = self.interval(t0, t1)
        if iv.devices == 0:
            return PerToken(None, None, tokens, iv, "no energy samples in the interval")
        if not iv.complete:
            reason = f"energy not measured for {iv.uncovered_s:.1f} device-seconds of the interval"
            return PerToken(None, iv.joules, tokens, iv, reason)
        return PerToken(iv.joules / tokens, iv.joules, tokens, iv)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _reading(v: Any) -> float | None:
    """A counter or power reading: a finite, non-negative number, else missing."""
    if _finite(v) and v >= 0:
        return float(v)
    return None
