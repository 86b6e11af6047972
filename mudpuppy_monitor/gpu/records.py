"""The records every GPU backend returns: frozen, with the unit in each field name.

A field the device does not report is None (never 0: a passive card has no fan, it is not at
0 %). Values are converted once, in the backend, so nothing downstream guesses units.

Their JSON (docs/protocol.md: `devices`, `attribution`; also `gpus --json`) is written here and
nowhere else: the `*_json` functions below, which the records' `to_dict` methods call too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int  # host pid (NVML reports host pids even inside containers)
    used_bytes: int | None  # None when the driver does not say (no permission, WDDM, MIG)

    def to_dict(self) -> dict[str, Any]:
        return process_json(self)


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int  # the vendor library's index (NVML ignores CUDA_VISIBLE_DEVICES)
    name: str
    uuid: str  # as the vendor library spells it ("GPU-..." for NVIDIA)
    t: float  # unix seconds when the sample was taken
    util_pct: float | None = None
    mem_util_pct: float | None = None  # memory controller busy %, not memory used %
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    fan_pct: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    simulated: bool = False  # True only for the fake backend: shown wherever the sample is

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "t": self.t,
            "util_pct": self.util_pct,
            "mem_util_pct": self.mem_util_pct,
            "mem_used_bytes": self.mem_used_bytes,
            "mem_total_bytes": self.mem_total_bytes,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
            "fan_pct": self.fan_pct,
            "processes": [process_json(p) for p in self.processes],
            "simulated": self.simulated,
        }


@dataclass(frozen=True, slots=True)
class RunOnDevice:
    """One run found on one device, and the evidence for it."""

    run_id: str
    reason: str  # "uuid" | "pid" | "parent" | "child" | "sibling"
    processes: tuple[GpuProcess, ...] = ()  # the device processes that belong to the run
    used_bytes: int | None = None  # their memory; None when none of them reports it

    def to_dict(self) -> dict[str, Any]:
        return run_on_device_json(self)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who is on one device: the runs, and everybody else ("others") with their memory."""

    index: int
    uuid: str
    runs: tuple[RunOnDevice, ...] = ()
    others: tuple[GpuProcess, ...] = ()
    others_used_bytes: int | None = None  # None when no other process reports memory
    run_ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_ids", tuple(r.run_id for r in self.runs))

    def to_dict(self) -> dict[str, Any]:
        """The wire shape (`attribution_json`) plus the device's index and uuid."""
        return {"index": self.index, "uuid": self.uuid, **attribution_json(self)}


def sum_bytes(processes: tuple[GpuProcess, ...] | list[GpuProcess]) -> int | None:
    """Total memory of processes that report it; None when none does (unknown is not 0)."""
    known = [p.used_bytes for p in processes if p.used_bytes is not None]
    return sum(known) if known else None


def process_json(p: GpuProcess) -> dict[str, Any]:
    return {"pid": p.pid, "used_bytes": p.used_bytes}


def run_on_device_json(r: RunOnDevice) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "reason": r.reason,
        "processes": [process_json(p) for p in r.processes],
        "used_bytes": r.used_bytes,
    }


def attribution_json(a: Attribution) -> dict[str, Any]:
    """One device's entry of `attribution` (keyed by the device index on the wire)."""
    return {
        "runs": list(a.run_ids),
        "evidence": [run_on_device_json(r) for r in a.runs],
        "others": [process_json(p) for p in a.others],
        "others_used_bytes": a.others_used_bytes,
    }
