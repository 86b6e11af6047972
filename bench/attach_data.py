"""The attach benchmark's data: the same runs as format v1 `events.jsonl` and as TensorBoard
event files (the four scalars of every step, the same wall times)."""

from __future__ import annotations

import json
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


def prepare(base: Path, runs: int, steps: int) -> tuple[Path, Path]:
    """(native root, TensorBoard root) under `base`, written unless a complete copy is there
    (a kept data directory saves minutes of writing between runs of the benchmark)."""
    done = base / f"done-{runs}x{steps}"
    native, tb = base / f"native-{runs}x{steps}", base / f"tb-{runs}x{steps}"
    if not done.exists():
        for d in (native, tb):
            if d.exists():
                import shutil

                shutil.rmtree(d)
        write_native(native, runs, steps)
        write_tensorboard(tb, runs, steps)
        done.touch()
    return native, tb
