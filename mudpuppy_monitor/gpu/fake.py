"""The `fake` backend: simulated GPUs for tests, demos and UI work, labelled as such.

Deterministic: every value is a pure function of (seed, device index, sample time), so two
backends with the same seed and clock give identical samples. Values move like a training job
(utilisation waves, memory that breathes, power and temperature that follow utilisation), and
odd-numbered devices have no fan, as passive datacenter cards do, so None paths get exercised.

The energy counter is the exact integral, from the time the backend was opened (a simulated
driver load), of the noiseless power curve the power readings scatter around (`fake_energy_j`):
differences of two readings are the energy of that stretch to float precision, as a real
counter's are to its resolution.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping

from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample

GIB = 1024**3
MIB = 1024**2

FAKE_NAME = "Simulated GPU 80GB (fake)"
FAKE_MEM_TOTAL_BYTES = 80 * GIB
FAKE_POWER_LIMIT_W = 700.0
# the utilisation wave (%, s) and how power follows utilisation (W, W per %)
_UTIL_MEAN, _UTIL_SWING, _PERIOD_S = 62.0, 30.0, 47.0
_POWER_IDLE_W, _POWER_SPAN_W = 85.0, FAKE_POWER_LIMIT_W - 120.0  # W at 0 %, W from 0 to 100 %


def fake_uuid(seed: int, index: int) -> str:
    """A stable NVIDIA-style UUID for simulated device `index` (put it in a run's meta
    `gpus` to attribute a demo run to a simulated device)."""
    digest = hashlib.sha256(f"mudpuppy-fake-gpu:{seed}:{index}".encode()).digest()
    return "GPU-" + str(uuidlib.UUID(bytes=digest[:16]))


def fake_phase(seed: int, index: int) -> float:
    """Where simulated device `index` starts on its utilisation wave (a fraction of a period)."""
    return random.Random(f"{seed}:{index}:phase").random()


def fake_energy_j(seed: int, index: int, t: float, since: float = 0.0) -> float:
    """The energy of simulated device `index` from `since` to `t` in joules, under the noiseless
    power curve P(s) = P0 + k * (U + A * sin(2 pi (s / T + phase))):

        E = (P0 + k U) (t - since) + k A T / (2 pi) * (cos(2 pi (since / T + phase))
                                                      - cos(2 pi (t / T + phase)))

    (P > 0 everywhere, so E grows with t). A sample's counter is this from the time the backend
    was opened (the simulated driver load). Tests compute expected energies from it by hand."""
    phase = fake_phase(seed, index)
    per_pct = _POWER_SPAN_W / 100.0
    mean_w = _POWER_IDLE_W + per_pct * _UTIL_MEAN
    swing = per_pct * _UTIL_SWING * _PERIOD_S / (2 * math.pi)

    def cos_at(x: float) -> float:
        return math.cos(2 * math.pi * (x / _PERIOD_S + phase))

    return mean_w * (t - since) + swing * (cos_at(since) - cos_at(t))


class FakeBackend:
    kind = "fake"
    name = "fake (simulated)"
    simulated = True

    def __init__(
        self,
        devices: int = 2,
        seed: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        processes: Mapping[int, Iterable[tuple[int, int | None]]] | None = None,
    ) -> None:
        if devices < 0:
            raise ValueError("devices must be >= 0")
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._opened_t = clock()  # the simulated driver load: the energy counters start here
        self._phase = [fake_phase(seed, i) for i in range(devices)]
        self._uuids = [fake_uuid(seed, i) for i in range(devices)]
        self._processes: dict[int, tuple[tuple[int, int | None], ...] | None] = {
            i: None for i in range(devices)
        }
        for i, procs in (processes or {}).items():
            self.set_processes(i, procs)
        self.reason = f"{devices} simulated device(s), not real hardware"
        self.device_names = tuple(FAKE_NAME for _ in range(devices))
        self.samples_taken = 0

    def device_count(self) -> int:
        return len(self._uuids)

    @property
    def uuids(self) -> list[str]:
        return list(self._uuids)

    def set_processes(self, index: int, processes: Iterable[tuple[int, int | None]] | None) -> None:
        """Put (pid, used_bytes) processes on a simulated device (None: the default one
        synthetic process). Lets a demo or test attribute a real pid to a simulated GPU."""
        if index not in self._processes:
            raise IndexError(f"no simulated GPU {index}")
        with self._lock:
            self._processes[index] = None if processes is None else tuple(processes)

    def close(self) -> None:
        pass

    def sample(self) -> list[GpuSample]:
        t = self._clock()
        with self._lock:
            self.samples_taken += 1
            return [self._sample_device(i, t) for i in range(len(self._uuids))]

    def _sample_device(self, i: int, t: float) -> GpuSample:
        # one noise stream per (seed, device, whole second): stable across processes and runs
        noise = random.Random(f"{self._seed}:{i}:{math.floor(t)}")
        phase = self._phase[i]
        wave = math.sin(2 * math.pi * (t / _PERIOD_S + phase))
        util = _clamp(round(_UTIL_MEAN + _UTIL_SWING * wave + noise.uniform(-4, 4)), 0, 100)
        breathe = 0.5 + 0.5 * math.sin(2 * math.pi * (t / 300.0 + phase))
        mem_used = int(FAKE_MEM_TOTAL_BYTES * (0.40 + 0.30 * breathe)) // MIB * MIB
        procs = self._processes[i]
        if procs is None:
            # the default synthetic job holds all but the context overhead
            procs = ((900_000 + 100 * self._seed + i, mem_used - 512 * MIB),)
        return GpuSample(
            index=i,
            name=FAKE_NAME,
            uuid=self._uuids[i],
            t=t,
            util_pct=float(util),
            mem_util_pct=float(_clamp(round(util * 0.55 + noise.uniform(-3, 3)), 0, 100)),
            mem_used_bytes=mem_used,
            mem_total_bytes=FAKE_MEM_TOTAL_BYTES,
            temperature_c=float(round(34 + 0.45 * util + noise.uniform(-1, 1))),
            power_w=round(_POWER_IDLE_W + _POWER_SPAN_W * util / 100 + noise.uniform(-6, 6), 1),
            power_limit_w=FAKE_POWER_LIMIT_W,
            sm_clock_mhz=float(1410 + round(570 * util / 100)) if util > 3 else 345.0,
            mem_clock_mhz=2619.0,
            fan_pct=float(round(30 + util * 0.5)) if i % 2 == 0 else None,
            energy_j=fake_energy_j(self._seed, i, t, self._opened_t),
            processes=tuple(GpuProcess(int(pid), used) for pid, used in procs),
            simulated=True,
        )


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))
