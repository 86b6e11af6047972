"""Attach, as a user sees it: 10 runs x 100,000 steps x 4 scalars (4M points), the server started
as a process and asked over HTTP, mudpuppy-monitor and TensorBoard the same way in one run.

- mudpuppy-monitor: `mudpuppy-monitor serve ROOT` with an empty parse cache (cold), then again
  with the cache the previous start left (warm: a re-attach after a restart);
- TensorBoard: `tensorboard --logdir ROOT --samples_per_plugin scalars=100000` over the same data
  written as event files.

Each start is timed from the launch to dashboard-ready and to full fidelity (defined in
bench/attach_client.py), with the bytes on the wire and the peak resident memory of the server
and its child processes. The three kinds of start are interleaved, and medians are taken over
the repeats. Last, the resident memory per point of an in-process attach (RSS after - before).
Timings move with the machine's load: the load average is printed with them.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.attach_client import (
    Mudpuppy,
    ServerProcess,
    TensorBoard,
    measure,
    mudpuppy_cmd,
    tensorboard_cmd,
)
from bench.attach_data import RUNS, STEPS, TAGS, prepare
from bench.bench_freshness import free_port

# MUDPUPPY_BENCH_DATA=DIR keeps the written data there between runs of the benchmark
DATA_ENV = "MUDPUPPY_BENCH_DATA"

MEMORY = """
import gc, json, sys
import psutil
from mudpuppy_monitor.core import Monitor
root, runs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gc.collect()
proc = psutil.Process()
rss0 = proc.memory_info().rss
mon = Monitor(root)
mon.refresh()
ok = len(mon.run_ids()) == runs and all(mon.counts(i).get("loss") == steps for i in mon.run_ids())
gc.collect()
print(json.dumps({"rss0": rss0, "rss1": proc.memory_info().rss, "ok": ok}))
"""


def memory_per_point(root: Path, runs: int, steps: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY, str(root), str(runs), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not got["ok"]:
        raise RuntimeError("the monitor did not hold every point")
    return (got["rss1"] - got["rss0"]) / (runs * steps * len(TAGS))


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def run(quick: bool = False) -> list[dict]:
    # quick: runs just over 1 MiB, so the warm start still resumes them from the cache
    runs, steps = (4, 8_000) if quick else (RUNS, STEPS)
    repeats = 1 if quick else 3
    kept = os.environ.get(DATA_ENV)
    base = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="mudpuppy-bench-attach-"))
    cache = Path(tempfile.mkdtemp(prefix="mudpuppy-bench-cache-"))
    ids = [f"run-{r:02d}" for r in range(runs)]
    timeout = 900.0
    load0 = os.getloadavg()
    cold: list[dict] = []
    warm: list[dict] = []
    tb: list[dict] = []
    try:
        native, tb_root = prepare(base, runs, steps)
        for _ in range(repeats):
            shutil.rmtree(cache / "c", ignore_errors=True)
            for into in (cold, warm):  # the second start finds what the first cached
                port = free_port()
                cmd = mudpuppy_cmd(sys.executable, native, port, str(cache / "c"))
                into.append(measure(Mudpuppy(), ServerProcess(cmd), port, ids, steps, timeout))
            port = free_port()
            cmd = tensorboard_cmd(sys.executable, tb_root, port, steps)
            tb.append(measure(TensorBoard(), ServerProcess(cmd), port, ids, steps, timeout))
        per_point = memory_per_point(native, runs, steps)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not kept:
            shutil.rmtree(base, ignore_errors=True)
    load1 = os.getloadavg()
    load = f"load avg {load0[0]:.1f} -> {load1[0]:.1f} (1 min)"
    size = f"{runs} runs x {steps:,} steps x {len(TAGS)} scalars"
    n = f"median of {repeats}"
    ready, full = _median(cold, "ready_s"), _median(cold, "full_s")
    tb_ready, tb_full = _median(tb, "ready_s"), _median(tb, "full_s")
    w_ready, w_full = _median(warm, "ready_s"), _median(warm, "full_s")
    mib = 1 << 20

    def row(metric: str, value: float, unit: str, target: str, compare: str) -> dict:
        return {
            "bench": "attach",
            "metric": metric,
            "value": value,
            "unit": unit,
            "target": target if not quick else "(quick size)",
            "compare": compare,
        }

    return [
        row(
            f"dashboard-ready from launch, {size}",
            ready,
            "s",
            "<= 1.5 s",
            f"TensorBoard {tb_ready:.2f} s ({tb_ready / ready:.1f}x); {n}; {load}",
        ),
        row(
            "full fidelity from launch (every run's whole loss series)",
            full,
            "s",
            ">= 3x TensorBoard",
            f"TensorBoard {tb_full:.2f} s; {n}",
        ),
        row("full fidelity: speed-up over TensorBoard", tb_full / full, "x", ">= 3x", f"{n}"),
        row(
            "re-attach with a warm parse cache: dashboard-ready",
            w_ready,
            "s",
            "<= 0.5 s",
            f"full fidelity {w_full:.2f} s; cold {ready:.2f} s; {n}",
        ),
        row(
            "bytes on the wire: dashboard-ready + full fidelity",
            (_median(cold, "ready_bytes") + _median(cold, "full_bytes")) / mib,
            "MiB",
            "",
            f"ready {_median(cold, 'ready_bytes') / mib:.1f} + full "
            f"{_median(cold, 'full_bytes') / mib:.1f} MiB; TensorBoard (gzip) ready "
            f"{_median(tb, 'ready_bytes') / mib:.1f} + full {_median(tb, 'full_bytes') / mib:.1f} MiB",
        ),
        row(
            "peak resident memory, server and its children",
            _median(cold, "peak_tree") / mib,
            "MiB",
            "",
            f"main process {_median(cold, 'peak_main') / mib:.0f} MiB (warm "
            f"{_median(warm, 'peak_tree') / mib:.0f}); TensorBoard "
            f"{_median(tb, 'peak_tree') / mib:.0f} MiB",
        ),
        row(
            "resident memory per point (in-process attach, RSS after - before)",
            per_point,
            "B",
            "<= 40 B",
            f"{runs * steps * len(TAGS):,} points",
        ),
    ]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(
            f"{r['metric']:<66} {r['value']:>9.3f} {r['unit']:<4} {r['target']:<18} {r['compare']}"
        )
