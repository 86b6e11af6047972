"""A small hyperparameter sweep written with the real training-side writer (RunWriter):
3 learning rates x 2 seeds, each run with a nested config that is the same everywhere except for
`lr` and `seed`. Used by the config-diff, table, grouping, link and snapshot tests.

Losses are a deterministic function of (lr, seed, step), so the order of the best losses is
known: a higher learning rate falls faster here, and seed 1 sits a little above seed 0.
"""

from __future__ import annotations

import math
from pathlib import Path

LRS = (1e-4, 3e-4, 1e-3)
SEEDS = (0, 1)
T0 = 1_700_000_000.0
STEPS = 120
LORA_LAYERS = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]


def run_name(lr: float, seed: int) -> str:
    return f"lr{lr:g}-seed{seed}"


def loss_at(lr: float, seed: int, step: int) -> float:
    rate = {1e-4: 90.0, 3e-4: 50.0, 1e-3: 25.0}[lr]
    return 2.4 * math.exp(-step / rate) + 0.35 + 0.03 * seed + 0.01 * math.sin(step + seed)


def config(lr: float, seed: int) -> dict:
    return {
        "lr": lr,
        "seed": seed,
        "model": {"name": "tiny-llama", "hidden_size": 64, "layers": 2},
        "lora": {"r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]},
        "batch_size": 8,
        "precision": "fp32",
    }


def best_loss(lr: float, seed: int, steps: int = STEPS) -> float:
    return min(loss_at(lr, seed, s) for s in range(1, steps + 1))


def write_sweep(root: Path, steps: int = STEPS, prefix: str = "") -> list[str]:
    """Six completed runs under root (ids `prefix + run_name`); returns their ids."""
    from mudpuppy_callback import RunWriter

    ids = []
    for k, (lr, seed) in enumerate((lr, seed) for lr in LRS for seed in SEEDS):
        start = T0 + 1000 * k
        clock = _Clock(start)
        name = prefix + run_name(lr, seed)
        with RunWriter(
            root, name, config=config(lr, seed), max_steps=steps, clock=clock, rank=0
        ) as run:
            for s in range(1, steps + 1):
                clock.t = start + 2.0 * s
                run.log(s, {"loss": loss_at(lr, seed, s), "learning_rate": lr, "grad_norm": 1.0})
                if s % 40 == 0:
                    run.log_eval(s, {"eval_loss": loss_at(lr, seed, s) + 0.05})
                    layers = {
                        n: {"A": 1.0 + s / 100, "B": s * lr, "update": s * lr / 10}
                        for n in LORA_LAYERS
                    }
                    run.log_lora(s, layers)
        ids.append(name)
    return ids


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
