"""GPU sampling costs that do not need a GPU: our own overhead per sample (fake backend, and the
nvidia backend over the fake binding, i.e. everything but the driver), the sampler tick with
history and a listener, attribution, and the memory of one hour of history.

The driver's own cost is not measured here (no GPU): NVML calls take ~20 ms per device with
persistence mode off (docs/gpu.md, "The sampler"), which is the anchor our overhead is compared to.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from mudpuppy_monitor.gpu.attribution import attribute  # noqa: E402
from mudpuppy_monitor.gpu.fake import FakeBackend  # noqa: E402
from mudpuppy_monitor.gpu.nvidia import NvidiaBackend  # noqa: E402
from mudpuppy_monitor.gpu.sampler import GpuSampler  # noqa: E402

DEVICES = 8
NVML_ANCHOR_US = 20_000.0  # per device, persistence mode off


def _median_us(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _row(metric: str, value: float, unit: str, target: str, compare: str) -> dict[str, Any]:
    return {
        "bench": "gpu",
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
        "compare": compare,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 200 if quick else 2000
    rows = []

    fake = FakeBackend(devices=DEVICES, seed=0)
    us = _median_us(fake.sample, n)
    rows.append(
        _row(
            f"fake backend sample, {DEVICES} devices",
            us,
            "us",
            "< 1 ms per tick",
            f"{us / DEVICES:.0f} us per device",
        )
    )

    from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml

    devices = [
        FakeNvDevice(uuid=f"GPU-{i}", compute=[(1000 + i, 1 << 30)], graphics=[(2000 + i, None)])
        for i in range(DEVICES)
    ]
    nvidia = NvidiaBackend(module=make_fake_pynvml(devices))
    us = _median_us(nvidia.sample, n)
    rows.append(
        _row(
            f"nvidia backend overhead (fake binding), {DEVICES} devices",
            us,
            "us",
            "small next to the driver",
            f"{us / DEVICES:.0f} us per device vs NVML ~{NVML_ANCHOR_US / 1000:.0f} ms per device "
            f"(persistence off): {100 * us / DEVICES / NVML_ANCHOR_US:.2f} %",
        )
    )

    sampler = GpuSampler(FakeBackend(devices=DEVICES, seed=0), interval_s=1.0, history_s=3600)
    sampler.add_listener(lambda samples: None)
    us = _median_us(sampler.sample_once, n)
    rows.append(
        _row(
            "sampler tick (fake, history, 1 listener)",
            us,
            "us",
            "< 1 % of a core at 1 Hz (10 ms)",
            f"{us / 1e4:.3f} % of a core at 1 Hz",
        )
    )

    samples = FakeBackend(devices=DEVICES, seed=0).sample()
    runs = [
        {"id": f"run-{k}", "pid": 1000 + k, "ppid": 999, "gpus": [samples[k % DEVICES].uuid]}
        for k in range(20)
    ]
    us = _median_us(lambda: attribute(samples, runs, hostname="h", ppid_of=lambda p: 999), n)
    rows.append(
        _row(
            f"attribute {DEVICES} devices x 20 runs",
            us,
            "us",
            "< 1 ms",
            "per /api/gpus request or tick",
        )
    )

    # memory of one full hour at 1 Hz for every device
    clock = [0.0]
    hist = GpuSampler(
        FakeBackend(devices=DEVICES, seed=0, clock=lambda: clock[0]), interval_s=1.0, history_s=3600
    )
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(hist.history_len):
        clock[0] = float(i)
        hist.sample_once()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_sample = used / (hist.history_len * DEVICES)
    rows.append(
        _row(
            f"history memory, 1 h at 1 Hz x {DEVICES} devices",
            used / 1e6,
            "MB",
            "bounded (deque maxlen)",
            f"{per_sample:.0f} bytes per device-sample",
        )
    )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
