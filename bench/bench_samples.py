"""Sampling cost: greedy generation every 50 steps during the tiny real LoRA fine-tune.

The tiny job (mudpuppy_monitor.tinytrain, CPU, one thread) runs with MonitorCallback's sampling
(3 prompts, 64 new tokens, every 50 steps) and without it, alternating (ABBA), median of several
runs. Reported: the time of one sampling (`took_s` as recorded in the run), that time as a share
of the training time it is spread over (took_s / (50 x step time)), the wall-clock ratio of the
two jobs, and the size of a `samples` line next to a `metrics` line. The tiny model's steps are
very cheap, so the share here is far larger than for a real model, whose training step grows with
the batch while one greedy generation of a few prompts grows only with the model: the real cost
is the user's generation, and `took_s` in every samples event tells it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

EVERY = 50
MAX_NEW_TOKENS = 64
PROMPTS = [
    "Write one sentence about rivers.",
    "Q: What is 17 * 3?\nA:",
    "Continue the sequence: 2, 4, 6, 8,",
]


def _row(metric: str, value: float, unit: str, target: str = "", compare: str = "") -> dict:
    return {
        "bench": "samples",
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "target": target,
        "compare": compare,
    }


def _train_once(root: Path, name: str, steps: int, sampling: bool) -> dict[str, Any]:
    from mudpuppy_monitor.tinytrain import build_tiny_tokenizer, build_tiny_trainer

    kwargs: dict[str, Any] = {}
    if sampling:
        kwargs = {
            "sample_prompts": PROMPTS,
            "sample_every": EVERY,
            "sample_max_new_tokens": MAX_NEW_TOKENS,
        }
    trainer = build_tiny_trainer(
        root,
        name,
        steps=steps,
        logging_steps=10,
        lora_every=0,
        processing_class=build_tiny_tokenizer(),
        callback_kwargs=kwargs,
        output_dir=root / f"out-{name}",
    )
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    sizes: dict[str, list[int]] = {"samples": [], "metrics": []}
    took: list[float] = []
    for line in (root / name / "events.jsonl").read_bytes().splitlines(keepends=True):
        event = json.loads(line)
        if event["kind"] in sizes:
            sizes[event["kind"]].append(len(line))
        if event["kind"] == "samples":
            took.append(event["took_s"])
    return {"elapsed": elapsed, "took": took, "sizes": sizes}


def bench_sampling(quick: bool) -> list[dict]:
    steps, repeats = (2 * EVERY, 2) if quick else (4 * EVERY, 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for warm in (False, True):  # imports, allocator, generate()'s first call
            _train_once(root, f"warmup-{warm}", EVERY, warm)
        with_s: list[float] = []
        without_s: list[float] = []
        took: list[float] = []
        sample_sizes: list[int] = []
        metric_sizes: list[int] = []
        # ABBA order, so drifts in machine load hit both sides alike
        order = [i % 4 in (0, 3) for i in range(2 * repeats)]
        for i, sampling in enumerate(order):
            res = _train_once(root, f"run-{i}", steps, sampling)
            (with_s if sampling else without_s).append(res["elapsed"])
            took += res["took"]
            sample_sizes += res["sizes"]["samples"]
            metric_sizes += res["sizes"]["metrics"]
    step_s = statistics.median(without_s) / steps
    took_s = statistics.median(took)
    share = took_s / (EVERY * step_s) * 100
    wall_ratio = statistics.median(with_s) / statistics.median(without_s)
    sample_bytes = statistics.median(sample_sizes)
    metric_bytes = statistics.median(metric_sizes)
    setting = f"{len(PROMPTS)} prompts x {MAX_NEW_TOKENS} new tokens, greedy, one batch"
    return [
        _row(
            "tiny LoRA step time without sampling",
            step_s * 1000,
            "ms",
            "",
            f"median of {repeats} x {steps} steps, CPU, 1 thread",
        ),
        _row("one sampling (took_s)", took_s * 1000, "ms", "", f"median of {len(took)}; {setting}"),
        _row(
            f"sampling share of step time at sample_every={EVERY}",
            share,
            "%",
            "",
            f"took_s / ({EVERY} x step time without sampling)",
        ),
        _row(
            f"wall time with / without sampling every {EVERY}",
            wall_ratio,
            "x",
            "",
            f"median of {repeats} runs each, ABBA",
        ),
        _row(
            "samples line",
            sample_bytes,
            "bytes/event",
            "",
            f"{sample_bytes / EVERY:.1f} bytes/step at every {EVERY}; "
            f"a metrics line is {metric_bytes:.0f} bytes",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    import torch

    # One thread, as in the callback benchmark: stable timings on a small shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _quiet_transformers()
            return bench_sampling(quick)
    finally:
        torch.set_num_threads(threads)


def _quiet_transformers() -> None:
    # The tiny model's 64 positions are shorter than prompt + 64 new tokens: transformers says so
    # on every call (the rotary embedding extends past it without trouble).
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(f"{row['metric']:<52} {row['value']:>12.3f} {row['unit']:<12} {row['compare']}")
