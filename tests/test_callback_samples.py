"""Sampling during training: MonitorCallback(sample_prompts=...) with a real transformers.Trainer,
a real peft LoRA and a locally built tokenizer (tiny, random weights, CPU)."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mudpuppy_callback import MonitorWarning, decode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.tinytrain import build_tiny_model, build_tiny_tokenizer, build_tiny_trainer

PROMPTS = ["hello", "count: 1 2 3", "<img src=x onerror=alert(1)>"]
STEPS = 20
EVERY = 5
NEW_TOKENS = 6
# LoRA dropout draws from torch's CPU generator every step: a training run whose RNG was moved
# by sampling would show it in its losses
DROPOUT = 0.1


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


class FlagRecorder:
    """A callback after MonitorCallback: every module's train/eval flag at the start of each step
    and at the end of it (after the monitor sampled), and the torch CPU RNG state at both."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.__class__ = type("FlagRecorder", (FlagRecorder, TrainerCallback), {})
        self.begin: dict[int, list[bool]] = {}
        self.end: dict[int, list[bool]] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.begin[state.global_step + 1] = [m.training for m in kwargs["model"].modules()]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.end[state.global_step] = [m.training for m in kwargs["model"].modules()]


def train(
    root: Path,
    name: str,
    *,
    steps: int = STEPS,
    every: int | None = EVERY,
    patch: Any = None,
    tokenizer: bool = True,
) -> dict[str, Any]:
    import torch

    recorder = FlagRecorder()
    kwargs: dict[str, Any] = {}
    if every is not None:
        kwargs = {
            "sample_prompts": PROMPTS,
            "sample_every": every,
            "sample_max_new_tokens": NEW_TOKENS,
        }
    trainer = build_tiny_trainer(
        root,
        name,
        steps=steps,
        lora_every=0,
        lora_dropout=DROPOUT,
        processing_class=build_tiny_tokenizer() if tokenizer else None,
        callback_kwargs=kwargs,
        extra_callbacks=[recorder],
        output_dir=root / f"out-{name}",
    )
    if patch is not None:
        patch(trainer.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    run_dir = root / name
    data = (run_dir / "events.jsonl").read_bytes()
    events = read_events(run_dir)
    return {
        "dir": run_dir,
        "bytes": data,
        "events": events,
        "samples": [e for e in events if e["kind"] == "samples"],
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "grad_norms": [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h],
        "weights": {
            n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad
        },
        "warnings": [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)],
        "recorder": recorder,
        "trainer": trainer,
        "torch_rng": torch.get_rng_state(),
    }


def drawing_generate(fail_on_call: int | None = None) -> Any:
    """Wraps the model's real generate() so that each call first draws from torch's, Python's and
    numpy's generators (greedy decoding itself draws nothing, so without this the comparison of
    losses could not tell whether the monitor restores them), and optionally fails."""

    def patch(model: Any) -> None:
        import torch

        real = model.generate
        calls = []

        def generate(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            torch.rand(3)
            random.random()
            np.random.rand()
            if len(calls) == fail_on_call:
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(*args, **kwargs)

        model.generate = generate

    return patch


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The 20-step job without sampling and with it (3 prompts every 5 steps, generate() drawing
    from every generator before generating), and a short one whose generation fails."""
    root = tmp_path_factory.mktemp("samples")
    return {
        "plain": train(root, "plain", every=None),
        "sampled": train(root, "sampled", patch=drawing_generate()),
        "failing": train(root, "failing", steps=6, every=2, patch=drawing_generate(2)),
    }


def test_four_samples_events_with_three_items_each(runs: dict[str, dict[str, Any]]) -> None:
    samples = runs["sampled"]["samples"]
    assert [e["step"] for e in samples] == [5, 10, 15, 20]
    for event in samples:
        assert [item["prompt"] for item in event["items"]] == PROMPTS
        assert all(isinstance(item["completion"], str) for item in event["items"])
        assert all(set(item) == {"prompt", "completion"} for item in event["items"])
        assert 0 < event["took_s"] < 60
    assert runs["sampled"]["warnings"] == []
    assert runs["plain"]["samples"] == []


def test_completions_are_the_greedy_output_of_each_prompt_alone(
    runs: dict[str, dict[str, Any]],
) -> None:
    # The last event was generated after the last optimizer step, so by the final weights.
    import torch

    trainer = runs["sampled"]["trainer"]
    tokenizer = build_tiny_tokenizer()
    model = trainer.model
    model.eval()
    expected = []
    with torch.no_grad():
        for prompt in PROMPTS:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            out = model.generate(input_ids=ids, max_new_tokens=NEW_TOKENS, do_sample=False)
            expected.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    model.train()
    last = runs["sampled"]["samples"][-1]
    assert [item["completion"] for item in last["items"]] == expected
    assert any(expected)  # the tiny model says something


def test_training_is_bit_identical_with_and_without_sampling(
    runs: dict[str, dict[str, Any]],
) -> None:
    import torch

    plain, sampled = runs["plain"], runs["sampled"]
    assert len(plain["losses"]) == STEPS
    # float equality: the same bits, not merely close
    assert sampled["losses"] == plain["losses"]
    assert sampled["grad_norms"] == plain["grad_norms"]
    assert sampled["weights"].keys() == plain["weights"].keys()
    assert all(torch.equal(sampled["weights"][n], w) for n, w in plain["weights"].items())
    assert torch.equal(sampled["torch_rng"], plain["torch_rng"])


def test_the_losses_do_depend_on_the_random_generator() -> None:
    # What makes the comparison above meaningful: with LoRA dropout on (and B no longer zero, as
    # after the first step), drawing one number from torch's generator before a training forward
    # pass changes the loss.
    import torch

    model = build_tiny_model(lora_dropout=DROPOUT)
    model.train()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    ids = torch.arange(16).reshape(1, 16)

    def loss(draw: bool) -> float:
        torch.manual_seed(1)
        if draw:
            torch.rand(1)
        with torch.no_grad():
            return float(model(input_ids=ids, labels=ids).loss)

    assert loss(False) == loss(False)
    assert loss(True) != loss(False)


def test_the_model_is_back_in_train_mode_after_each_sampling(
    runs: dict[str, dict[str, Any]],
) -> None:
    for name, steps in (("sampled", [5, 10, 15, 20]), ("failing", [2, 4])):  # 4: it failed
        recorder = runs[name]["recorder"]
        for step in steps:
            assert recorder.end[step] == recorder.begin[step]
            assert all(recorder.end[step])


def test_a_failing_generation_is_one_warning_and_training_finishes(
    runs: dict[str, dict[str, Any]],
) -> None:
    failing = runs["failing"]
    assert failing["warnings"] == [
        "mudpuppy: sampling failed (RuntimeError: CUDA out of memory (simulated)); "
        "no more samples events"
    ]
    assert [e["step"] for e in failing["samples"]] == [2]  # none after the failure at step 4
    end = failing["events"][-1]
    assert (end["kind"], end["status"], end["step"]) == ("end", "completed", 6)
    # every step's log, plus the end-of-training summary
    assert len([e for e in failing["events"] if e["kind"] == "metrics"]) == 6 + 1


def test_every_line_is_strict_json_and_the_daemon_reads_it_cleanly(
    runs: dict[str, dict[str, Any]],
) -> None:
    def reject(token: str) -> Any:
        raise ValueError(token)

    data = runs["sampled"]["bytes"]
    assert data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        assert isinstance(json.loads(line, parse_constant=reject), dict)
    mon = Monitor(runs["sampled"]["dir"].parent, clock=lambda: 2e9)
    mon.refresh()
    summary = mon.summary("sampled")
    assert summary is not None
    assert (summary.bad_lines, summary.step, summary.status) == (0, STEPS, "completed")


def test_sampling_leaves_rng_and_module_flags_exactly_as_they_were() -> None:
    # Direct: a tokenizer without a chat template (the prompt is encoded as it is), a module
    # deliberately in eval mode inside a training model, and every generator compared.
    import torch
    from mudpuppy_callback import _Sampler

    model = build_tiny_model(lora_dropout=DROPOUT)
    model.train()
    frozen = next(m for name, m in model.named_modules() if name.endswith("lora_dropout"))
    frozen.eval()
    flags = [m.training for m in model.modules()]
    tokenizer = build_tiny_tokenizer(chat_template=False)
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    items, took_s = _Sampler(PROMPTS, 1, NEW_TOKENS).generate(model, tokenizer, None)
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert torch.equal(before[0], after[0]) and before[1] == after[1]
    assert np.array_equal(before[2], after[2])
    assert [m.training for m in model.modules()] == flags
    assert took_s > 0
    model.eval()
    with torch.no_grad():
        for prompt, item in zip(PROMPTS, items, strict=True):
            ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            out = model.generate(input_ids=ids, max_new_tokens=NEW_TOKENS, do_sample=False)
            assert item == {
                "prompt": prompt,
                "completion": tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True),
            }


def test_without_a_tokenizer_sampling_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    run = train(tmp_path, "r", steps=2, every=1, tokenizer=False)
    assert len(run["warnings"]) == 1 and "pass processing_class=tokenizer" in run["warnings"][0]
    assert run["samples"] == []
    assert (run["events"][-1]["status"], run["events"][-1]["step"]) == ("completed", 2)


def test_a_final_sample_when_the_last_step_is_not_a_multiple(tmp_path: Path) -> None:
    run = train(tmp_path, "r", steps=3, every=2)
    assert [e["step"] for e in run["samples"]] == [2, 3]
    assert run["events"][-1]["kind"] == "end"
