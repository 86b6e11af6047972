"""One run's energy and token record while the daemon sees it on GPUs. Pure: fed by the
tracker, which holds the lock.

- devices: every sample of a device attributed to the run goes to the run's EnergyAccountant
  (energy counter, else power), and extends that device's attribution spans (for MFU: which
  devices an interval ran on);
- tokens: the run's cumulative token count (t, tokens, step) from the time it was first seen
  on a GPU;
- intervals: once the energy of every current device is accounted past a token point at least
  `interval_s` after the previous boundary, the interval between them becomes one point of the
  efficiency series (J/token, and MFU when the FLOPs and peaks are known);
- the recent window: J/token over the last `window_s` of token points the energy covers, for
  the summary.

docs/efficiency.md ("Live") describes the rules and their limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mudpuppy_monitor.core.energy import EnergyAccountant, EnergyTotals, PerToken
from mudpuppy_monitor.gpu.records import GpuSample

__all__ = ["IntervalPoint", "RunEnergy", "TokenPoint"]


@dataclass(frozen=True, slots=True)
class TokenPoint:
    t: float
    tokens: float
    step: int


@dataclass(frozen=True, slots=True)
class IntervalPoint:
    """One interval of the series: from `start` to `end` (the step and time of the point)."""

    start: TokenPoint
    end: TokenPoint
    devices: tuple[str, ...]  # uuids attributed at some time in the interval
    per_token: PerToken

    @property
    def tokens_per_s(self) -> float:
        return (self.end.tokens - self.start.tokens) / (self.end.t - self.start.t)


MAX_POINTS = 100_000  # token counts held per run at most (normally minutes' worth)

# a function giving the MFU of an interval: (tokens/s, device uuids) -> MFU or None
MfuOf = Callable[[float, Sequence[str]], "float | None"]


class RunEnergy:
    def __init__(
        self,
        generation: int,
        *,
        interval_s: float,
        window_s: float,
        max_gap_s: float,
    ) -> None:
        self.generation = generation
        self.interval_s = interval_s
        self.window_s = window_s
        self.max_gap_s = max_gap_s
        self.accountant = EnergyAccountant(max_gap_s=max_gap_s)
        self.names: dict[str, tuple[int, str]] = {}  # uuid -> (index, name)
        self.spans: dict[str, list[list[float]]] = {}  # uuid -> [[first t, last t], ...]
        self.current: tuple[str, ...] = ()  # the devices of the latest tick it was on
        self.since: float | None = None  # the first tick it was seen on a GPU
        self.last_seen: float | None = None
        self.ticks = 0
        self.simulated = False
        self.token_key: str | None = None  # the series its token count is in
        self.cursor = 0  # points of that series read so far
        self.points: list[TokenPoint] = []  # token points since `since`, trimmed behind
        self.anchor: TokenPoint | None = None  # where the next interval starts
        self.recent: PerToken | None = None
        self._recent_key: tuple[TokenPoint, TokenPoint, tuple[str, ...]] | None = None
        self.recent_reason: str | None = "waiting for two token counts while on a GPU"
        self.intervals = 0  # series points made

    # -- devices --------------------------------------------------------------------------

    def observe(self, t: float, samples: Sequence[GpuSample]) -> None:
        """The samples of one tick of the devices attributed to the run."""
        if not samples:
            return
        self.ticks += 1
        if self.since is None:
            self.since = t
        self.last_seen = t
        self.current = tuple(sorted(s.uuid for s in samples))
        for s in samples:
            self.names[s.uuid] = (s.index, s.name)
            self.simulated = self.simulated or s.simulated
            spans = self.spans.setdefault(s.uuid, [])
            if spans and s.t - spans[-1][1] <= self.max_gap_s:
                spans[-1][1] = max(spans[-1][1], s.t)
            else:
                spans.append([s.t, s.t])
            self.accountant.add(s.uuid, s.t, energy_j=s.energy_j, power_w=s.power_w)

    def devices_between(self, t0: float, t1: float) -> tuple[str, ...]:
        """Devices attributed to the run for some time inside (t0, t1): one whose samples
        stop at t0 or start at t1 did not work on this interval."""
        return tuple(
            uuid
            for uuid, spans in sorted(self.spans.items())
            if any(a < t1 and b > t0 for a, b in spans)
        )

    def totals(self) -> EnergyTotals:
        return self.accountant.totals()

    # -- tokens ---------------------------------------------------------------------------

    def add_tokens(self, points: Iterable[TokenPoint]) -> None:
        """New points of the run's token count, in file order. Points from before the run was
        first seen on a GPU, without a time, or not after the last held are left out."""
        since = self.since
        last_t = self.points[-1].t if self.points else -math.inf
        for p in points:
            if not (math.isfinite(p.t) and math.isfinite(p.tokens)) or p.tokens < 0:
                continue
            if since is None or p.t < since or p.t <= last_t:
                continue
            self.points.append(p)
            last_t = p.t

    # -- intervals and the recent window --------------------------------------------------

    def covered_until(self) -> float | None:
        return self.accountant.covered_until(self.current)

    def advance(self, mfu_of: MfuOf) -> list[tuple[IntervalPoint, float | None]]:
        """The intervals that became complete since the last call, each with its MFU."""
        covered = self.covered_until()
        out: list[tuple[IntervalPoint, float | None]] = []
        if covered is None:
            return out
        if len(self.points) > MAX_POINTS:
            # counts pile up past readings that do not come (the run left its GPUs but logs on):
            # start over from the newest instead of holding them all
            self.points = self.points[-1:]
            self.anchor = None
        if not self.points:
            self._recent(covered)
            self._trim(covered)
            return out
        if self.anchor is None:
            self.anchor = self.points[0]
        anchor = self.anchor
        for p in self.points:
            if p.t <= anchor.t:
                continue
            if p.t > covered:
                break
            if p.t - anchor.t < self.interval_s:
                continue
            iv = IntervalPoint(
                anchor,
                p,
                self.devices_between(anchor.t, p.t),
                self.accountant.joules_per_token(anchor.t, anchor.tokens, p.t, p.tokens),
            )
            value = mfu_of(iv.tokens_per_s, iv.devices) if p.tokens > anchor.tokens else None
            out.append((iv, value))
            anchor = p
        self.anchor = anchor
        self.intervals += len(out)
        self._recent(covered)
        self._trim(covered)
        return out

    def _recent(self, covered: float) -> None:
        """J/token over the last `window_s` of token points that the energy covers."""
        inside = [p for p in self.points if p.t <= covered]
        if len(inside) < 2:
            self.recent = None
            if self.totals().method is None and self.ticks >= 2:
                self.recent_reason = "the run's GPUs report neither an energy counter nor power"
            elif self.points:
                self.recent_reason = "waiting for energy readings past the latest token count"
            else:
                self.recent_reason = "waiting for two token counts while on a GPU"
            return
        end = inside[-1]
        start = next(p for p in inside if p.t >= end.t - self.window_s)
        if start is end:
            start = inside[-2]  # counts further apart than the window: the last two
        if self.recent is not None and self._recent_key == (start, end, self.current):
            return  # the energy between two covered points does not change
        self._recent_key = (start, end, self.current)
        result = self.accountant.joules_per_token(start.t, start.tokens, end.t, end.tokens)
        self.recent = result
        self.recent_reason = result.reason

    def _trim(self, covered: float) -> None:
        """Forget token points, energy and spans behind both the next interval's start and the
        recent window (the totals stay), so a run watched for days holds minutes of them."""
        keep_from = covered - 2 * self.window_s
        if self.anchor is not None:
            keep_from = min(keep_from, self.anchor.t)
        first = next((i for i, p in enumerate(self.points) if p.t >= keep_from), len(self.points))
        if first > 1:
            del self.points[: first - 1]
        cut = min(keep_from, self.points[0].t if self.points else keep_from) - 1.0
        self.accountant.trim_before(cut)
        for spans in self.spans.values():
            while len(spans) > 1 and spans[0][1] < cut:
                spans.pop(0)
