"""Queries and idle cost: a 1M-point series decimated to 2,000 points (the min/max query the
dashboard makes on load and zoom), and the daemon's CPU while 20 runs each log at 10 Hz.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POINTS = 1_000_000
BUDGET = 2000
RUNS = 20
HZ = 10.0

WRITER = """
import sys, time
sys.path[:0] = sys.argv[4].split(":")
from mudpuppy_callback import RunWriter
root, runs, hz, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[5])
writers = [RunWriter(root, f"run-{i:02d}", max_steps=10**6) for i in range(runs)]
print("ready", flush=True)
t0 = time.monotonic()
step = 0
while time.monotonic() - t0 < seconds:
    step += 1
    for w in writers:
        w.log(step, {"loss": 1.0 / step, "grad_norm": 1.0, "learning_rate": 1e-4, "tokens_seen": 512.0 * step})
    time.sleep(max(0.0, t0 + step / hz - time.monotonic()))
for w in writers:
    w.close()
"""


def decimate_ms(repeats: int = 30) -> tuple[float, float, int]:
    """(median ms of the decimation alone, median ms of the whole series query, points out)."""
    from mudpuppy_monitor.core import queries
    from mudpuppy_monitor.core.decimate import decimate
    from mudpuppy_monitor.core.rows import Rows
    from mudpuppy_monitor.core.run import RunState

    rng = np.random.default_rng(0)
    steps = np.arange(POINTS)
    y = np.exp(-steps / 3e5) + 0.01 * rng.standard_normal(POINTS)
    y[rng.integers(0, POINTS, 20)] += 5.0  # spikes the answer must keep
    run = RunState("bench", "/", "native", 1)
    rows = Rows()
    rows.steps = steps.tolist()
    rows.ts = (1.7e9 + steps * 0.1).tolist()
    rows.cols = {"loss": (list(range(POINTS)), y.tolist())}
    run.apply_train(rows)
    alone, whole = [], []
    out = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        decimate(steps, y, BUDGET)
        t1 = time.perf_counter()
        got = queries.series(run, ["loss"], "step", None, None, BUDGET)
        t2 = time.perf_counter()
        alone.append((t1 - t0) * 1000)
        whole.append((t2 - t1) * 1000)
        out = len(got["loss"]["x"])
    return statistics.median(alone), statistics.median(whole), out


def daemon_cpu(seconds: float = 10.0) -> tuple[float, int]:
    """(CPU % of one core used by a Monitor while RUNS runs log at HZ, points it took in)."""
    import mudpuppy_callback

    from mudpuppy_monitor.core import Monitor

    base = Path(tempfile.mkdtemp(prefix="mudpuppy-bench-cpu-"))
    paths = os.pathsep.join(
        [os.path.dirname(mudpuppy_callback.__file__)] + [p for p in sys.path if p]
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(base), str(RUNS), str(HZ), paths, str(seconds + 2)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"

        async def main() -> tuple[float, int]:
            mon = Monitor(base)
            await mon.start()
            sub = mon.subscribe()

            async def drain() -> None:  # a consumer, as the server has one
                async for _ in sub:
                    pass

            task = asyncio.create_task(drain())
            await asyncio.sleep(1.0)  # past the initial read
            c0, w0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            c1, w1 = time.process_time(), time.perf_counter()
            n = sum(mon.counts(r).get("loss", 0) for r in mon.run_ids())
            await mon.stop()
            task.cancel()
            return 100.0 * (c1 - c0) / (w1 - w0), n

        return asyncio.run(main())
    finally:
        writer.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def run(quick: bool = False) -> list[dict]:
    alone, whole, out = decimate_ms()
    cpu, points = daemon_cpu(3.0 if quick else 10.0)
    return [
        {
            "bench": "decimate",
            "metric": f"{POINTS:,} points -> {BUDGET:,} (min/max per bucket), median",
            "value": alone,
            "unit": "ms",
            "target": "<= 20 ms",
            "compare": f"whole series() query incl. lists: {whole:.1f} ms, {out} points out",
        },
        {
            "bench": "decimate",
            "metric": f"daemon CPU while {RUNS} runs log at {HZ:g} Hz",
            "value": cpu,
            "unit": "%",
            "target": "",
            "compare": f"of one core; {points:,} points taken in (x 4 scalars)",
        },
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['metric']:<58} {row['value']:>9.2f} {row['unit']:<3} {row['target']:<10} {row['compare']}"
        )
