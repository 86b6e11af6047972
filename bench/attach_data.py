"""Attach: 10 runs x 100,000 steps x 4 scalars (4M points) written in format v1; the time from
creating a Monitor to every point being queryable, and the resident memory per point; then the
same data as TensorBoard event files, loaded by a real `tensorboard` process and polled through
its scalars HTTP API until every point is served. Printed side by side, with the ratio.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

RUNS = 10
STEPS = 100_000
TAGS = ("loss", "grad_norm", "learning_rate", "tokens_seen")
T0 = 1_700_000_000.0

LINE = (
    b'{"v":1,"seq":%d,"t":%r,"kind":"metrics","step":%d,"epoch":%r,'
    b'"values":{"loss":%r,"grad_norm":%r,"learning_rate":%r,"tokens_seen":%r}}\n'
)


def columns(run: int, steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(run)
    s = np.arange(1, steps + 1)
    return {
        "step": s,
        "t": T0 + s * 0.1,
        "epoch": s / steps,
        "loss": 2.0 * np.exp(-s / (steps / 3)) + 0.05 * rng.random(steps),
        "grad_norm": 1.0 + rng.random(steps),
        "learning_rate": 1e-4 * (1 - s / steps),
        "tokens_seen": (s * 4096).astype(np.float64),
    }


def write_native(root: Path, runs: int, steps: int) -> None:
    from mudpuppy_callback import decode_line, encode_line

    for r in range(runs):
        d = root / f"run-{r:02d}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text(
            json.dumps({"name": d.name, "max_steps": steps, "host": "bench"})
        )
        c = columns(r, steps)
        rows = zip(
            range(1, steps + 1),
            c["t"].tolist(),
            c["step"].tolist(),
            c["epoch"].tolist(),
            c["loss"].tolist(),
            c["grad_norm"].tolist(),
            c["learning_rate"].tolist(),
            c["tokens_seen"].tolist(),
            strict=True,
        )
        start = encode_line({"v": 1, "seq": 0, "t": T0, "kind": "start"})
        body = b"".join(LINE % row for row in rows)
        decode_line(body[: body.index(b"\n") + 1])  # the template is format v1
        (d / "events.jsonl").write_bytes(start + body)


def write_tensorboard(root: Path, runs: int, steps: int) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for r in range(runs):
        w = EventFileWriter(str(root / f"run-{r:02d}"), max_queue_size=100_000, flush_secs=3600)
        c = columns(r, steps)
        cols = [c[tag].tolist() for tag in TAGS]
        for i, (step, t) in enumerate(zip(c["step"].tolist(), c["t"].tolist(), strict=True)):
            values = [
                summary_pb2.Summary.Value(tag=tag, simple_value=cols[k][i])
                for k, tag in enumerate(TAGS)
            ]
            w.add_event(
                event_pb2.Event(wall_time=t, step=step, summary=summary_pb2.Summary(value=values))
            )
        w.close()


DAEMON = """
import gc, json, sys, time
import psutil
from mudpuppy_monitor.core import Monitor
root, runs, steps, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
gc.collect()
proc = psutil.Process()
rss0 = proc.memory_info().rss
t0 = time.perf_counter()
mon = Monitor(root)
mon.refresh()
ids = mon.run_ids()
ok = len(ids) == runs and all(mon.counts(i).get(tag) == steps for i in ids for tag in tags)
sample = mon.series(ids[0], tags, points=2000)  # a real query, answered from the store
t1 = time.perf_counter()
gc.collect()
rss1 = proc.memory_info().rss
print(json.dumps({"s": t1 - t0, "rss0": rss0, "rss1": rss1, "ok": ok, "q": len(sample)}))
"""


def measure_daemon(root: Path, runs: int, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, "-c", DAEMON, str(root), str(runs), str(steps), ",".join(TAGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not got["ok"]:
        raise RuntimeError("the daemon did not hold every point")
    return got


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def measure_tensorboard(root: Path, runs: int, steps: int, timeout_s: float = 600) -> float:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(root),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--samples_per_plugin",
        f"scalars={steps}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pending = {(f"run-{r:02d}", tag) for r in range(runs) for tag in TAGS}
    try:
        while pending:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(
                    f"TensorBoard served {len(pending)} series short after {timeout_s} s"
                )
            if proc.poll() is not None:
                raise RuntimeError("tensorboard exited")
            for run, tag in sorted(pending):
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run={run}&tag={tag}"
                try:
                    points = _get(url)
                except OSError:
                    break  # not listening yet, or not loaded: try again shortly
                if isinstance(points, list) and len(points) == steps:
                    pending.discard((run, tag))
                else:
                    break  # runs load in turn; come back to this one
            else:
                continue
            time.sleep(0.2)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(quick: bool = False) -> list[dict]:
    runs, steps = RUNS, (10_000 if quick else STEPS)
    points = runs * steps * len(TAGS)
    base = Path(tempfile.mkdtemp(prefix="mudpuppy-bench-attach-"))
    try:
        write_native(base / "native", runs, steps)
        tries = [measure_daemon(base / "native", runs, steps) for _ in range(3)]
        attach_s = statistics.median(t["s"] for t in tries)
        per_point = statistics.median((t["rss1"] - t["rss0"]) / points for t in tries)
        write_tensorboard(base / "tb", runs, steps)
        tb_s = measure_tensorboard(base / "tb", runs, steps)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ratio = tb_s / attach_s
    size = f"{runs} runs x {steps:,} steps x {len(TAGS)} scalars"
    return [
        {
            "bench": "attach",
            "metric": f"time to queryable, {size}",
            "value": attach_s,
            "unit": "s",
            "target": "<= 2.5 s" if not quick else "(quick size)",
            "compare": f"TensorBoard {tb_s:.1f} s, ratio {ratio:.1f}x",
        },
        {
            "bench": "attach",
            "metric": "TensorBoard, every point served by its scalars API",
            "value": tb_s,
            "unit": "s",
            "target": "",
            "compare": f"samples_per_plugin scalars={steps}",
        },
        {
            "bench": "attach",
            "metric": "speed-up over TensorBoard",
            "value": ratio,
            "unit": "x",
            "target": ">= 5x",
            "compare": f"{tb_s:.1f} s / {attach_s:.2f} s",
        },
        {
            "bench": "attach",
            "metric": "resident memory per point (RSS after - before)",
            "value": per_point,
            "unit": "B",
            "target": "<= 40 B",
            "compare": f"{points:,} points; 3 attaches, median",
        },
    ]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(
            f"{row['metric']:<60} {row['value']:>10.3f} {row['unit']:<3} {row['target']:<12} {row['compare']}"
        )
