"""Callback overhead: training speed with and without MonitorCallback, on_log cost, LoRA norms.

1. Steps/s of the tiny real LoRA fine-tune (mudpuppy_monitor.tinytrain, CPU) with the callback
   (logging every step, LoRA norms every 10 steps) and without it, alternating, median of several
   runs. Wall-clock ratios on a busy machine are noisy, so the time spent inside the callback's
   hooks is also measured directly and reported as a share of the training time.
2. `on_log` cost per call (median and p99, microseconds) with a real writer on the real disk.
3. LoRA norm collection for a 7B-shaped adapter set: 32 layers x 7 modules (q,k,v,o,gate,up,down),
   r=16, hidden 4096, intermediate 11008, fp32, built with real peft on a meta-device base model
   (only the adapters are materialized). Batched (`LoraProbe.norms()`: grouped `_foreach_norm`,
   batched r x r Gram products, one host copy) against a loop with one `.item()` per norm, and
   against forming `scale * B @ A` densely (timed on 1 layer, scaled to 32). On CPU `.item()`
   does not wait for a device, so the CPU ratio only shows kernel-count and Python overhead; on a
   GPU each `.item()` is a device sync, and the GPU rows appear when CUDA is available.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

TARGET_OVERHEAD = "< 1 % of step time"
TARGET_ON_LOG = "< 100 us"


def _row(metric: str, value: float, unit: str, target: str = "", compare: str = "") -> dict:
    return {
        "bench": "callback",
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "target": target,
        "compare": compare,
    }


# -- 1. training speed -------------------------------------------------------------------------


class _HookTimer:
    """Wraps the callback's hooks to sum the time spent inside each."""

    HOOKS = ("on_train_begin", "on_step_end", "on_log", "on_evaluate", "on_save", "on_train_end")

    def __init__(self, cb: Any) -> None:
        self.seconds = dict.fromkeys(self.HOOKS, 0.0)
        for name in self.HOOKS:
            setattr(cb, name, self._wrap(name, getattr(cb, name)))

    @property
    def per_step_s(self) -> float:
        """Time in the hooks that run during the steps (not the once-per-run begin and end)."""
        return self.seconds["on_step_end"] + self.seconds["on_log"] + self.seconds["on_evaluate"]

    def _wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0

        return timed


def _train_once(
    root: Path, name: str, steps: int, with_callback: bool
) -> tuple[float, _HookTimer | None]:
    """(steps per second, the hook timer) of one run."""
    from mudpuppy_callback import MonitorCallback

    from mudpuppy_monitor.tinytrain import build_tiny_trainer

    trainer = build_tiny_trainer(
        root, name, steps=steps, logging_steps=1, lora_every=10, output_dir=root / f"out-{name}"
    )
    timer = None
    if with_callback:
        cb = next(c for c in trainer.callback_handler.callbacks if isinstance(c, MonitorCallback))
        timer = _HookTimer(cb)
    else:
        trainer.remove_callback(MonitorCallback)
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    return steps / elapsed, timer


def bench_training(quick: bool) -> list[dict]:
    steps, repeats = (30, 2) if quick else (60, 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for warm in (True, False):  # imports, allocator, thread pools
            _train_once(root, f"warmup-{warm}", 5, warm)
        with_cb: list[float] = []
        without: list[float] = []
        step_share: list[float] = []
        begin_ms: list[float] = []
        end_ms: list[float] = []
        # ABBA order, so drifts in machine load and position effects hit both sides alike
        order = [i % 4 in (0, 3) for i in range(2 * repeats)]
        for i, use_callback in enumerate(order):
            rate, timer = _train_once(root, f"run-{i}", steps, use_callback)
            if timer is None:
                without.append(rate)
                continue
            with_cb.append(rate)
            step_share.append(timer.per_step_s / (steps / rate))
            begin_ms.append(timer.seconds["on_train_begin"] * 1000)
            end_ms.append(timer.seconds["on_train_end"] * 1000)
    a, b = statistics.median(with_cb), statistics.median(without)
    share = statistics.median(step_share) * 100
    return [
        _row(
            "tiny LoRA steps/s without callback",
            b,
            "steps/s",
            "",
            f"median of {repeats} x {steps} steps, CPU",
        ),
        _row(
            "tiny LoRA steps/s with callback",
            a,
            "steps/s",
            "",
            f"ratio {a / b:.3f} (logging every step, LoRA norms every 10)",
        ),
        _row(
            "time in per-step hooks",
            share,
            "% of step time",
            TARGET_OVERHEAD,
            "on_step_end + on_log + on_evaluate, measured inside the run",
        ),
        _row(
            "on_train_begin (once per run)",
            statistics.median(begin_ms),
            "ms",
            "",
            f"meta.json + start; on_train_end {statistics.median(end_ms):.1f} ms",
        ),
    ]


# -- 2. on_log ---------------------------------------------------------------------------------


def bench_on_log(quick: bool) -> list[dict]:
    from mudpuppy_callback import MonitorCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    calls = 2000 if quick else 10000
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = TrainingArguments(output_dir=tmp, report_to="none", use_cpu=True)
        state = TrainerState(max_steps=calls)
        control = TrainerControl()
        cb = MonitorCallback(Path(tmp) / "runs", name="onlog", lora_every=None)
        cb.on_train_begin(args, state, control)
        times = []
        for step in range(1, calls + 1):
            state.global_step = step
            logs = {
                "loss": 2.0 + 1.0 / step,
                "grad_norm": 0.5,
                "learning_rate": 1e-4 * (1 - step / calls),
                "epoch": step / calls,
            }
            t0 = time.perf_counter_ns()
            cb.on_log(args, state, control, logs=logs)
            times.append(time.perf_counter_ns() - t0)
        cb.on_train_end(args, state, control)
    times.sort()
    median_us = times[len(times) // 2] / 1000
    p99_us = times[int(len(times) * 0.99)] / 1000
    return [
        _row(
            "on_log per call, median", median_us, "us", TARGET_ON_LOG, f"{calls} calls, real file"
        ),
        _row("on_log per call, p99", p99_us, "us", TARGET_ON_LOG, f"{calls} calls, real file"),
    ]


# -- 3. LoRA norms -----------------------------------------------------------------------------

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_adapter_set(layers: int, hidden: int, intermediate: int, r: int, device: str) -> Any:
    """A real peft LoRA model whose base weights live on the meta device (no memory), with
    random adapter weights materialized on `device`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
    )
    with torch.device("meta"):
        base = LlamaForCausalLM(config)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS))
    g = torch.Generator().manual_seed(0)
    for module in model.modules():
        for attr in ("lora_A", "lora_B"):
            container = getattr(module, attr, None)
            if container is None or not hasattr(container, "keys") or "default" not in container:
                continue
            lin = container["default"]
            w = torch.randn(tuple(lin.weight.shape), generator=g) * 0.02
            lin.weight = torch.nn.Parameter(w.to(device))
    return model


def _loop_item_norms(probe: Any) -> dict[str, dict[str, float]]:
    """The straightforward way: a norm and an .item() per matrix (one device sync each)."""
    out: dict[str, dict[str, float]] = {}
    for e in probe.entries:
        a, b, _ = e.tensors()
        af, bf = a.float(), b.float()
        ga = af @ af.T
        gb = bf.T @ bf
        scale = float(e.module.scaling[e.adapter])
        out[e.path] = {
            "A": af.norm().item(),
            "B": bf.norm().item(),
            "update": scale * (ga * gb).sum().clamp_min(0).sqrt().item(),
        }
    return out


def _dense_update_norms(entries: list[Any], dtype: Any = None) -> list[float]:
    out = []
    for e in entries:
        a, b, _ = e.tensors()
        if dtype is not None:
            a, b = a.to(dtype), b.to(dtype)
        out.append((float(e.module.scaling[e.adapter]) * (b @ a)).norm().item())
    return out


def _gram_sq(e: Any, dtype: Any) -> float:
    a, b, _ = e.tensors()
    a, b = a.to(dtype), b.to(dtype)
    return float(((a @ a.T) * (b.T @ b)).sum())


def _median_time(fn: Any, repeats: int, sync: Any = None) -> float:
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_lora_norms(quick: bool, device: str = "cpu") -> list[dict]:
    import torch
    from mudpuppy_callback import LoraProbe

    layers, hidden, intermediate, r = 32, 4096, 11008, 16
    repeats = 3 if quick else 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_adapter_set(layers, hidden, intermediate, r, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    t0 = time.perf_counter()
    probe = LoraProbe(model)
    walk_s = time.perf_counter() - t0
    n_modules = len(probe.entries)
    assert n_modules == layers * len(TARGETS), n_modules
    batched = probe.norms()
    looped = _loop_item_norms(probe)
    worst = max(
        abs(batched[p][k] - looped[p][k]) / max(abs(looped[p][k]), 1e-30)
        for p in looped
        for k in looped[p]
    )
    t_batched = _median_time(probe.norms, repeats, sync)
    t_loop = _median_time(lambda: _loop_item_norms(probe), repeats, sync)
    # Dense `scale * B @ A` on one layer: its time (scaled to all layers) and its float32 error.
    # The reference is the trace identity in float64 (exact up to float64 rounding).
    one_layer = [e for e in probe.entries if e.path.startswith("model.layers.0.")]
    exact = [
        float(e.module.scaling[e.adapter]) * math.sqrt(_gram_sq(e, torch.float64))
        for e in one_layer
    ]
    if sync:
        sync()
    t0 = time.perf_counter()
    dense32 = _dense_update_norms(one_layer)
    t_dense = (time.perf_counter() - t0) * layers
    err_trace = max(
        abs(batched[e.path]["update"] - x) / x for e, x in zip(one_layer, exact, strict=True)
    )
    err_dense = max(abs(d - x) / x for d, x in zip(dense32, exact, strict=True))
    shape = f"{layers} layers x {len(TARGETS)} modules, r={r}, hidden {hidden}/{intermediate}, fp32, {device}"
    if device == "cpu":
        shape += ", 1 thread"
    return [
        _row(
            f"LoRA norms batched ({device})",
            t_batched * 1000,
            "ms",
            "one device sync",
            f"{shape}; per-.item() loop {t_loop * 1000:.1f} ms, ratio {t_loop / t_batched:.1f}x; "
            f"max rel diff {worst:.1e}",
        ),
        _row(
            f"LoRA norms per-.item() loop ({device})",
            t_loop * 1000,
            "ms",
            "",
            f"{3 * n_modules} syncs",
        ),
        _row(
            f"LoRA update norm via dense B@A ({device})",
            t_dense * 1000,
            "ms",
            "",
            f"timed on 1 layer, x{layers}; ratio to batched {t_dense / t_batched:.0f}x; max rel "
            f"error vs float64: dense {err_dense:.1e}, trace identity {err_trace:.1e}",
        ),
        _row(
            f"LoRA module walk, once per model ({device})",
            walk_s * 1000,
            "ms",
            "",
            f"{n_modules} modules",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    import torch

    # One thread: on a small shared machine OpenMP threads spin-wait against other processes and
    # CPU timings swing by 20x between repeats; single-threaded they are stable and comparable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    import torch

    rows = bench_on_log(quick)
    rows += bench_lora_norms(quick, "cpu")
    if torch.cuda.is_available():
        rows += bench_lora_norms(quick, "cuda")
    rows += bench_training(quick)
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['metric']:<48} {row['value']:>12.3f} {row['unit']:<16} {row['target']:<20} {row['compare']}"
        )
