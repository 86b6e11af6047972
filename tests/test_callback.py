"""MonitorCallback with a real transformers.Trainer and a real peft LoRA (tiny, random, CPU)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import mudpuppy_callback as mc
import pytest
from mudpuppy_callback import MonitorWarning, decode_line

from mudpuppy_monitor.tinytrain import build_tiny_model, build_tiny_trainer

REPO = Path(__file__).resolve().parents[1]
LORA_PATHS = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
]


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def monitor_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]


class AtStep:
    """A callback that runs `action(run_dir)` once, at the end of step `step`."""

    def __init__(self, step: int, action: Any) -> None:
        from transformers import TrainerCallback

        self.step = step
        self.action = action
        self.__class__ = type("AtStep", (AtStep, TrainerCallback), {})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            self.action()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 20-step LoRA run: logging every step, eval every 5, save every 10."""
    base = tmp_path_factory.mktemp("tiny")
    trainer = build_tiny_trainer(
        base / "runs",
        "tiny",
        steps=20,
        eval_every=5,
        save_every=10,
        lora_every=5,
        output_dir=base / "out",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    run_dir = base / "runs" / "tiny"
    return {
        "dir": run_dir,
        "out": base / "out",
        "meta": json.loads((run_dir / "meta.json").read_text()),
        "events": read_events(run_dir),
        "history": trainer.state.log_history,
        "warnings": monitor_warnings(caught),
    }


def test_meta_carries_the_trainer_config(tiny_run: dict[str, Any]) -> None:
    meta = tiny_run["meta"]
    assert meta["format"] == "mudpuppy-run/1"
    assert meta["name"] == "tiny"
    assert (meta["world_size"], meta["max_steps"], meta["gpus"]) == (1, 20, [])
    assert meta["num_train_epochs"] == 1
    assert set(meta["versions"]) >= {"python", "torch", "transformers", "peft", "mudpuppy_callback"}
    config = meta["config"]
    expected = {
        "model": "LlamaForCausalLM (llama)",
        "method": "lora",
        "precision": "fp32",
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 8,
        "effective_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_steps": 20,
        "warmup_steps": 2,
        "lr_scheduler_type": "linear",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        "lora_dropout": 0.0,
        # layers x modules x (A + B), plus the trainable copy of lm_head (modules_to_save)
        "trainable_params": 2 * 2 * (4 * 32 + 32 * 4) + 128 * 32,
        "total_params": 29856 + 128 * 32,
        "train_dataset_size": 256,
        "world_size": 1,
        "output_dir": str(tiny_run["out"]),
    }
    assert {k: config[k] for k in expected} == expected


def test_events_follow_the_trainer(tiny_run: dict[str, Any]) -> None:
    events = tiny_run["events"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["kind"] == "start" and "resumed_from" not in events[0]
    assert events[-1]["kind"] == "end"
    assert (events[-1]["status"], events[-1]["step"]) == ("completed", 20)
    assert tiny_run["warnings"] == []


def test_one_metrics_line_per_train_log_with_the_logged_values(tiny_run: dict[str, Any]) -> None:
    train_logs = [h for h in tiny_run["history"] if not any(k.startswith("eval_") for k in h)]
    metrics = [e for e in tiny_run["events"] if e["kind"] == "metrics"]
    assert len(train_logs) == 21  # 20 steps + the final summary
    assert len(metrics) == len(train_logs)
    for event, log in zip(metrics, train_logs, strict=True):
        logged = {k: float(v) for k, v in log.items() if k not in ("epoch", "step")}
        assert event["step"] == log["step"]
        assert event["epoch"] == log["epoch"]
        # everything logged, exactly; the Trainer's own token count is not written twice
        assert event["values"] == logged
        assert logged["num_input_tokens_seen"] == 128 * log["step"]
    assert [e["step"] for e in metrics[:20]] == list(range(1, 21))
    assert "train_loss" in metrics[-1]["values"]


def test_eval_lines(tiny_run: dict[str, Any]) -> None:
    evals = [e for e in tiny_run["events"] if e["kind"] == "eval"]
    eval_logs = [h for h in tiny_run["history"] if "eval_loss" in h]
    assert [e["step"] for e in evals] == [5, 10, 15, 20]
    assert [e["values"]["eval_loss"] for e in evals] == [h["eval_loss"] for h in eval_logs]
    assert all(all(k.startswith("eval_") for k in e["values"]) for e in evals)


def test_lora_lines_name_every_adapted_module(tiny_run: dict[str, Any]) -> None:
    loras = [e for e in tiny_run["events"] if e["kind"] == "lora"]
    assert [e["step"] for e in loras] == [5, 10, 15, 20]
    for event in loras:
        assert sorted(event["layers"]) == LORA_PATHS
        for norms in event["layers"].values():
            assert sorted(norms) == ["A", "B", "update"]
            assert all(math.isfinite(v) and v > 0 for v in norms.values())
    # B starts at zero and grows as the adapter learns
    b_q0 = [e["layers"][LORA_PATHS[0]]["B"] for e in loras]
    assert b_q0 == sorted(b_q0)


def test_checkpoint_lines_point_at_saved_checkpoints(tiny_run: dict[str, Any]) -> None:
    checkpoints = [e for e in tiny_run["events"] if e["kind"] == "checkpoint"]
    assert [(e["step"], e["path"]) for e in checkpoints] == [
        (10, str(tiny_run["out"] / "checkpoint-10")),
        (20, str(tiny_run["out"] / "checkpoint-20")),
    ]
    assert all(Path(e["path"]).is_dir() for e in checkpoints)


def test_every_line_is_strict_json(tiny_run: dict[str, Any]) -> None:
    def reject(token: str) -> Any:
        raise ValueError(token)

    for line in (tiny_run["dir"] / "events.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=reject)


def test_lora_norms_match_the_dense_computation() -> None:
    import torch
    from peft import LoraConfig

    model = build_tiny_model(lora=False, seed=1)
    from peft import get_peft_model

    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True)
    )
    model.add_adapter("second", LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_()  # B is zero at init; give every matrix a value
    norms = mc.lora_norms(model)
    assert sorted(norms) == LORA_PATHS
    q = model.get_base_model().model.layers[1].self_attn.q_proj
    rec = norms["model.layers.1.self_attn.q_proj"]
    assert sorted(rec) == ["A", "B", "magnitude", "second/A", "second/B", "second/update", "update"]
    for prefix, adapter in (("", "default"), ("second/", "second")):
        a = q.lora_A[adapter].weight
        b = q.lora_B[adapter].weight
        dense = (q.scaling[adapter] * (b @ a)).norm().item()
        assert rec[prefix + "A"] == pytest.approx(a.norm().item(), rel=1e-6)
        assert rec[prefix + "B"] == pytest.approx(b.norm().item(), rel=1e-6)
        assert rec[prefix + "update"] == pytest.approx(dense, rel=1e-5)
    mag = q.lora_magnitude_vector["default"].weight
    assert rec["magnitude"] == pytest.approx(mag.norm().item(), rel=1e-6)
    assert sorted(norms["model.layers.1.self_attn.v_proj"]) == ["A", "B", "magnitude", "update"]


def test_single_named_adapter_uses_plain_keys() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build_tiny_model(lora=False), LoraConfig(r=2, target_modules=["v_proj"]), adapter_name="sft"
    )
    norms = mc.lora_norms(model)
    assert sorted(norms) == ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj"]
    assert sorted(norms["model.layers.0.self_attn.v_proj"]) == ["A", "B", "update"]
    assert norms["model.layers.0.self_attn.v_proj"]["B"] == 0.0  # peft initializes B to zero


def test_model_without_adapters_writes_no_lora_events(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(
        tmp_path / "runs", "full", steps=4, lora=False, lora_every=2, output_dir=tmp_path / "o"
    )
    trainer.train()
    events = read_events(tmp_path / "runs" / "full")
    assert [e["kind"] for e in events].count("lora") == 0
    assert events[-1]["status"] == "completed"
    config = json.loads((tmp_path / "runs" / "full" / "meta.json").read_text())["config"]
    assert config["method"] == "full" and config["trainable_params"] == config["total_params"]
    assert mc.lora_norms(trainer.model) == {}


def test_deleted_run_directory_mid_training_one_warning(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "doomed"
    trainer = build_tiny_trainer(
        tmp_path / "runs",
        "doomed",
        steps=12,
        eval_every=4,
        save_every=6,
        output_dir=tmp_path / "o",
        extra_callbacks=[AtStep(5, lambda: shutil.rmtree(run_dir))],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 12  # training finished
    messages = monitor_warnings(caught)
    assert len(messages) == 1 and "deleted" in messages[0]
    assert not run_dir.exists()  # a deleted run stays deleted


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_disk_full_mid_training_one_warning(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "full-disk"

    def fill_disk() -> None:
        target = str(run_dir / "events.jsonl")
        full = os.open("/dev/full", os.O_WRONLY)
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{name}") == target:
                    os.dup2(full, int(name))  # every later write fails with ENOSPC
            except OSError:
                pass
        os.close(full)

    trainer = build_tiny_trainer(
        tmp_path / "runs",
        "full-disk",
        steps=10,
        output_dir=tmp_path / "o",
        extra_callbacks=[AtStep(3, fill_disk)],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 10
    messages = monitor_warnings(caught)
    assert len(messages) == 1 and "No space left on device" in messages[0]
    events = read_events(run_dir)
    # the file keeps what was written before the disk filled up, all of it valid
    assert [e["step"] for e in events if e["kind"] == "metrics"] == [1, 2]


def test_non_zero_rank_writes_nothing(tmp_path: Path) -> None:
    from mudpuppy_callback import MonitorCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = build_tiny_model()
    args = TrainingArguments(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True)
    state = TrainerState(max_steps=10, is_world_process_zero=False, is_local_process_zero=True)
    control = TrainerControl()
    cb = MonitorCallback(tmp_path / "runs", name="rank1", lora_every=1)
    cb.on_train_begin(args, state, control, model=model)
    for step in range(1, 4):
        state.global_step = step
        cb.on_step_end(args, state, control, model=model)
        cb.on_log(args, state, control, logs={"loss": 1.0, "epoch": 0.1}, model=model)
        cb.on_evaluate(args, state, control, metrics={"eval_loss": 1.0}, model=model)
        cb.on_save(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)
    assert not (tmp_path / "runs").exists()
    assert cb.writer is None
    # the same calls as rank 0 do write: the test above can fail
    state.is_world_process_zero = True
    cb.on_train_begin(args, state, control, model=model)
    cb.on_log(args, state, control, logs={"loss": 1.0}, model=model)
    cb.on_train_end(args, state, control, model=model)
    assert [e["kind"] for e in read_events(tmp_path / "runs" / "rank1")] == [
        "start",
        "metrics",
        "lora",
        "end",
    ]


def test_exception_inside_the_loop_ends_failed(tmp_path: Path) -> None:
    code = f"""
        from transformers import TrainerCallback
        from mudpuppy_monitor.tinytrain import build_tiny_trainer

        class Boom(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 3:
                    raise RuntimeError("boom at step 3")

        build_tiny_trainer({str(tmp_path / "runs")!r}, "boom", steps=10, output_dir={str(tmp_path / "o")!r},
                           extra_callbacks=[Boom()]).train()
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 1 and "RuntimeError: boom at step 3" in proc.stderr
    events = read_events(tmp_path / "runs" / "boom")
    assert [e["step"] for e in events if e["kind"] == "metrics"] == [1, 2]
    end = events[-1]
    assert (end["kind"], end["status"], end["error"]) == (
        "end",
        "failed",
        "RuntimeError: boom at step 3",
    )


def test_failing_lora_norms_warn_once_and_the_run_goes_on(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(
        tmp_path / "runs", "odd", steps=6, lora_every=1, output_dir=tmp_path / "o"
    )
    cb = next(
        c for c in trainer.callback_handler.callbacks if type(c).__name__ == "MonitorCallback"
    )

    class BrokenProbe:
        def __bool__(self) -> bool:
            return True

        def norms(self) -> dict[str, Any]:
            raise RuntimeError("unsupported layer")

    cb._probe, cb._probe_model = BrokenProbe(), trainer.model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = monitor_warnings(caught)
    assert messages == [
        "mudpuppy: LoRA norms failed (RuntimeError: unsupported layer); no more lora events"
    ]
    events = read_events(tmp_path / "runs" / "odd")
    assert [e["kind"] for e in events].count("metrics") == 7
    assert "lora" not in [e["kind"] for e in events]
    assert events[-1]["status"] == "completed"


def test_a_failing_hook_warns_once_per_hook(tmp_path: Path) -> None:
    def break_log() -> None:
        def log(*args: Any, **kwargs: Any) -> bool:
            raise KeyError("lost")

        cb.writer.log = log  # every later on_log fails

    trainer = build_tiny_trainer(
        tmp_path / "runs",
        "odd",
        steps=5,
        output_dir=tmp_path / "o",
        extra_callbacks=[AtStep(2, break_log)],
    )
    cb = next(
        c for c in trainer.callback_handler.callbacks if type(c).__name__ == "MonitorCallback"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 5
    assert monitor_warnings(caught) == [
        "mudpuppy: on_log failed (KeyError: 'lost'); training goes on"
    ]
    events = read_events(tmp_path / "runs" / "odd")
    assert [e["step"] for e in events if e["kind"] == "metrics"] == [1]
    assert events[-1]["status"] == "completed"


def test_importing_the_module_imports_no_heavy_library() -> None:
    code = """
        import sys
        import mudpuppy_callback
        heavy = ("torch", "transformers", "peft", "fastapi", "uvicorn", "numpy", "mudpuppy_monitor")
        print(sorted(m for m in heavy if m in sys.modules))
        cls = mudpuppy_callback.MonitorCallback
        print("transformers" in sys.modules, [c.__name__ for c in cls.__mro__[:3]])
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "callback")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[]",
        "True ['MonitorCallback', '_MonitorCallbackBase', 'TrainerCallback']",
    ]


def test_tinytrain_command_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mudpuppy_monitor.tinytrain", "--root", str(tmp_path), "--name", "cli",
         "--steps", "6", "--lr", "5e-3", "--eval-every", "3", "--save-every", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = read_events(tmp_path / "cli")
    kinds = [e["kind"] for e in events]
    assert (
        kinds.count("metrics") == 7 and kinds.count("eval") == 2 and kinds.count("checkpoint") == 2
    )
    assert events[-1]["status"] == "completed"
    meta = json.loads((tmp_path / "cli" / "meta.json").read_text())
    assert meta["config"]["learning_rate"] == 5e-3
    # checkpoints went to a temporary directory that the command removed
    assert not Path(meta["config"]["output_dir"]).exists()


def test_default_output_dir_is_removed_with_the_trainer(tmp_path: Path) -> None:
    import gc

    trainer = build_tiny_trainer(tmp_path / "runs", "t", steps=2, save_every=2, lora_every=0)
    out = Path(trainer.args.output_dir)
    assert out.name.startswith("mudpuppy-tiny-") and tmp_path not in out.parents
    trainer.train()
    assert (out / "checkpoint-2").is_dir()  # still there while the trainer is in use
    del trainer
    gc.collect()
    assert not out.exists()
    given = tmp_path / "mine"
    trainer = build_tiny_trainer(tmp_path / "runs", "u", steps=1, lora_every=0, output_dir=given)
    trainer.train()
    del trainer
    gc.collect()
    assert given.is_dir()  # a directory the caller named is the caller's


def test_resumed_training_appends_to_the_same_run(tmp_path: Path) -> None:
    first = build_tiny_trainer(
        tmp_path / "runs", "r", steps=4, save_every=4, output_dir=tmp_path / "o"
    )
    first.train()
    second = build_tiny_trainer(
        tmp_path / "runs",
        "r",
        steps=6,
        save_every=4,
        output_dir=tmp_path / "o",
        callback_kwargs={"resume": True},
    )
    second.train(resume_from_checkpoint=str(tmp_path / "o" / "checkpoint-4"))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]
    events = read_events(tmp_path / "runs" / "r")
    assert [e["seq"] for e in events] == list(range(len(events)))
    starts = [e for e in events if e["kind"] == "start"]
    assert [s.get("resumed_from") for s in starts] == [None, 4]
    assert starts[0]["run_id"] == starts[1]["run_id"]
    assert [e["step"] for e in events if e["kind"] == "metrics" and "loss" in e["values"]] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert [(e["status"], e["step"]) for e in events if e["kind"] == "end"] == [
        ("completed", 4),
        ("completed", 6),
    ]


def test_a_trainer_resumed_in_a_new_process_continues_its_run_unless_resume_is_false(
    tmp_path: Path,
) -> None:
    first = build_tiny_trainer(
        tmp_path / "a", "r", steps=4, save_every=4, output_dir=tmp_path / "o"
    )
    first.train()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    checkpoint = str(tmp_path / "o" / "checkpoint-4")
    # the default: a resumed Trainer given the same name appends (a new start, resumed_from)
    build_tiny_trainer(tmp_path / "a", "r", steps=6, output_dir=tmp_path / "o").train(
        resume_from_checkpoint=checkpoint
    )
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["r"]
    events = read_events(tmp_path / "a" / "r")
    assert [e.get("resumed_from") for e in events if e["kind"] == "start"] == [None, 4]
    assert [e["seq"] for e in events] == list(range(len(events)))
    # resume=False: a run of its own, as before
    build_tiny_trainer(
        tmp_path / "b",
        "r",
        steps=6,
        output_dir=tmp_path / "o",
        callback_kwargs={"resume": False},
    ).train(resume_from_checkpoint=checkpoint)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["r", "r-2"]
    starts = [e for e in read_events(tmp_path / "b" / "r-2") if e["kind"] == "start"]
    assert [s.get("resumed_from") for s in starts] == [4]


def test_a_run_still_being_written_on_this_host_is_not_resumed_into(tmp_path: Path) -> None:
    def meta(**fields: Any) -> None:
        (tmp_path / "r").mkdir(exist_ok=True)
        (tmp_path / "r" / "meta.json").write_text(json.dumps(fields))

    assert mc._may_resume(str(tmp_path), "r") is False  # nothing to resume
    assert mc._may_resume(str(tmp_path), None) is False  # a default name is always new
    host = mc.socket.gethostname()
    meta(host=host, pid=os.getppid())  # alive: another job of the same name
    assert mc._may_resume(str(tmp_path), "r") is False
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    meta(host=host, pid=dead.pid)
    assert mc._may_resume(str(tmp_path), "r") is True
    meta(host="another-host", pid=os.getppid())  # cannot be checked from here
    assert mc._may_resume(str(tmp_path), "r") is True
    meta(host=host, pid=0)
    assert mc._may_resume(str(tmp_path), "r") is True


def test_dora_and_two_adapters_in_meta_and_lora_events(tmp_path: Path) -> None:
    from mudpuppy_callback import MonitorCallback
    from peft import LoraConfig, get_peft_model
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = get_peft_model(
        build_tiny_model(lora=False),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj"], use_dora=True),
    )
    model.add_adapter("style", LoraConfig(r=2, lora_alpha=2, target_modules=["v_proj"]))
    args = TrainingArguments(
        output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True, bf16=False
    )
    state = TrainerState(max_steps=3)
    control = TrainerControl()
    cb = MonitorCallback(
        tmp_path / "runs", name="dora", lora_every=1, config={"dataset": "synthetic"}
    )
    cb.on_train_begin(args, state, control, model=model)
    state.global_step = 1
    cb.on_step_end(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)
    config = json.loads((tmp_path / "runs" / "dora" / "meta.json").read_text())["config"]
    assert (config["method"], config["r"], config["lora_alpha"], config["dataset"]) == (
        "dora",
        4,
        16,
        "synthetic",
    )
    assert sorted(config["adapters"]) == ["default", "style"]
    assert config["adapters"]["style"]["target_modules"] == ["v_proj"]
    assert config["adapters"]["default"]["use_dora"] is True
    lora = [e for e in read_events(tmp_path / "runs" / "dora") if e["kind"] == "lora"]
    assert len(lora) == 1 and lora[0]["step"] == 1
    layers = lora[0]["layers"]
    assert sorted(layers) == LORA_PATHS
    assert sorted(layers["model.layers.0.self_attn.q_proj"]) == ["A", "B", "magnitude", "update"]
    assert sorted(layers["model.layers.0.self_attn.v_proj"]) == [
        "style/A",
        "style/B",
        "style/update",
    ]
    assert layers["model.layers.0.self_attn.q_proj"]["magnitude"] > 0


def test_progress_between_sparse_logs_at_most_every_two_seconds(tmp_path: Path) -> None:
    class Ticking:  # every reading of the clock is one second later
        t = 1_700_000_000.0

        def __call__(self) -> float:
            self.t += 1.0
            return self.t

    trainer = build_tiny_trainer(
        tmp_path / "runs",
        "sparse",
        steps=9,
        logging_steps=5,
        lora_every=0,
        output_dir=tmp_path / "o",
        callback_kwargs={"clock": Ticking()},
    )
    trainer.train()
    events = read_events(tmp_path / "runs" / "sparse")
    assert [(e["kind"], e.get("step")) for e in events] == [
        ("start", None),
        ("progress", 2),
        ("progress", 4),
        ("metrics", 5),
        ("progress", 7),
        ("progress", 9),
        ("metrics", 9),
        ("end", 9),
    ]
    times = [e["t"] for e in events]
    progress_gaps = [
        b - a
        for a, b, e in zip(times, times[1:], events[1:], strict=False)
        if e["kind"] == "progress"
    ]
    assert min(progress_gaps) >= 2.0


def test_cuda_memory_and_device_uuids_with_a_faked_torch_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from mudpuppy_callback import MonitorCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True)
    # No GPU on test machines: fake torch.cuda at its Python API, and a Trainer on cuda:0.
    monkeypatch.setattr(type(args), "device", property(lambda self: torch.device("cuda", 0)))
    uuids = ["5f3c0a1e-0000-1111-2222-333344445555", "GPU-already-prefixed"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": uuids[i]})()
    )
    calls: list[str] = []

    def nested_stats(*a: Any) -> dict[str, Any]:
        calls.append("nested")
        return {
            "allocated_bytes": {"all": {"current": 1_000_000, "peak": 1_500_000}},
            "reserved_bytes": {"all": {"current": 2_000_000, "peak": 2_500_000}},
        }

    def one_value(*a: Any) -> int:
        raise AssertionError("each one-value call flattens and sorts every statistic")

    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", nested_stats)
    for fn in ("memory_stats", "memory_allocated", "memory_reserved", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, fn, one_value)
    state = TrainerState(max_steps=2)
    control = TrainerControl()
    cb = MonitorCallback(tmp_path / "runs", name="cuda", lora_every=None)
    cb.on_train_begin(args, state, control, model=build_tiny_model())
    state.global_step = 1
    cb.on_log(args, state, control, logs={"loss": 2.0, "epoch": 0.5})
    assert calls == ["nested"]  # one read of the allocator statistics per log
    # a torch whose statistics are laid out differently: the one-value functions
    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", lambda *a: {})
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 3)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 4)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 5)
    state.global_step = 2
    cb.on_log(args, state, control, logs={"loss": 1.0})
    cb.on_train_end(args, state, control)
    meta = json.loads((tmp_path / "runs" / "cuda" / "meta.json").read_text())
    # only the device the Trainer uses, not every visible one
    assert meta["gpus"] == ["GPU-5f3c0a1e-0000-1111-2222-333344445555"]
    metrics = [e for e in read_events(tmp_path / "runs" / "cuda") if e["kind"] == "metrics"]
    assert metrics[0]["values"] == {
        "loss": 2.0,
        "mem_allocated": 1_000_000,
        "mem_reserved": 2_000_000,
        "mem_peak": 1_500_000,
    }
    assert metrics[1]["values"] == {
        "loss": 1.0,
        "mem_allocated": 3,
        "mem_reserved": 4,
        "mem_peak": 5,
    }


def test_tokens_seen_only_when_the_logs_lack_the_trainers_count(tmp_path: Path) -> None:
    from mudpuppy_callback import MonitorCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "o"),
        report_to="none",
        use_cpu=True,
        include_num_input_tokens_seen="all",
    )
    state = TrainerState(max_steps=3)
    control = TrainerControl()
    cb = MonitorCallback(tmp_path / "runs", name="tokens", lora_every=None)
    cb.on_train_begin(args, state, control, model=build_tiny_model(lora=False))
    state.global_step, state.num_input_tokens_seen = 1, 512
    cb.on_log(args, state, control, logs={"loss": 2.0, "num_input_tokens_seen": 512})
    state.global_step, state.num_input_tokens_seen = 2, 1024
    cb.on_log(args, state, control, logs={"loss": 1.5})  # a log written without the count
    cb.on_train_end(args, state, control)
    metrics = [e for e in read_events(tmp_path / "runs" / "tokens") if e["kind"] == "metrics"]
    assert [e["values"] for e in metrics] == [
        {"loss": 2.0, "num_input_tokens_seen": 512},
        {"loss": 1.5, "tokens_seen": 1024},
    ]


def test_device_uuids_name_the_device_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    uuids = ["GPU-first", "GPU-second", "GPU-third"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": uuids[i]})()
    )
    assert mc._cuda_uuids(True) == uuids
    assert mc._cuda_uuids(True, mc._cuda_indices_in_use(torch.device("cuda", 1), None)) == [
        "GPU-second"
    ]
    assert mc._cuda_uuids(True, mc._cuda_indices_in_use(torch.device("cpu"), None)) == []


def test_lora_norms_of_an_embedding_adapter() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build_tiny_model(lora=False), LoraConfig(r=3, lora_alpha=6, target_modules=["embed_tokens"])
    )
    emb = model.get_base_model().model.embed_tokens
    with torch.no_grad():
        emb.lora_embedding_B["default"].normal_()
    norms = mc.lora_norms(model)
    assert sorted(norms) == ["model.embed_tokens"]
    a = emb.lora_embedding_A["default"]  # (r, vocab)
    b = emb.lora_embedding_B["default"]  # (dim, r)
    rec = norms["model.embed_tokens"]
    assert rec["A"] == pytest.approx(a.norm().item(), rel=1e-6)
    assert rec["B"] == pytest.approx(b.norm().item(), rel=1e-6)
    assert rec["update"] == pytest.approx((2.0 * (b @ a)).norm().item(), rel=1e-5)


def test_lora_module_names_without_fsdp_checkpoint_and_compile_wrappers() -> None:
    import torch
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing,
    )
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    class FsdpWrapped(torch.nn.Module):  # names its child as FSDP (1) does
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self._fsdp_wrapped_module = inner

    plain = mc.lora_norms(build_tiny_model())
    model = build_tiny_model()  # the same seed: the same weights
    apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, LlamaDecoderLayer))
    layers = model.get_base_model().model.layers
    layers[0] = torch.compile(layers[0])  # compiling block by block
    layers[1] = FsdpWrapped(layers[1])
    wrapped = torch.compile(model)
    raw_names = [
        n for n, m in wrapped.named_modules() if isinstance(getattr(m, "scaling", 0), dict)
    ]
    assert raw_names[0] == (
        "_orig_mod.base_model.model.model.layers.0._orig_mod._checkpoint_wrapped_module"
        ".self_attn.q_proj"
    )
    assert "model.layers.1._fsdp_wrapped_module._checkpoint_wrapped_module" in raw_names[2]
    norms = mc.lora_norms(wrapped)
    assert sorted(norms) == LORA_PATHS
    assert norms == plain


@pytest.mark.parametrize("layout", ["dtensor", "empty shard"])
def test_sharded_lora_weights_stop_the_norms_with_one_warning(tmp_path: Path, layout: str) -> None:
    import torch
    import torch.distributed as dist
    from mudpuppy_callback import MonitorCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True)
    state = TrainerState(max_steps=3)
    control = TrainerControl()
    model = build_tiny_model()
    cb = MonitorCallback(tmp_path / "runs", name="sharded", lora_every=1)
    q = model.get_base_model().model.layers[1].self_attn.q_proj
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb.on_train_begin(args, state, control, model=model)
        state.global_step = 1
        cb.on_step_end(args, state, control, model=model)  # whole weights: measured
        if layout == "dtensor":  # a real DTensor, as FSDP2 or tensor parallelism leave them
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.tensor import Shard, distribute_tensor

            dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
        try:
            if layout == "dtensor":
                mesh = init_device_mesh("cpu", (1,))
                sharded = distribute_tensor(q.lora_A["default"].weight.detach(), mesh, [Shard(0)])
                q.lora_A["default"].weight = torch.nn.Parameter(sharded)
                message = (
                    "the LoRA weights of model.layers.1.self_attn.q_proj are sharded (DTensor)"
                )
            else:  # FSDP with use_orig_params: a rank's view of a weight it holds no part of
                q.lora_B["default"].weight = torch.nn.Parameter(torch.empty(0))
                message = (
                    "a LoRA weight of model.layers.1.self_attn.q_proj is empty in this process"
                )
            with pytest.raises(mc.LoraNotMeasurable, match=re.escape(message)):
                mc.lora_norms(model)
            for step in (2, 3):
                state.global_step = step
                cb.on_step_end(args, state, control, model=model)
            cb.on_train_end(args, state, control, model=model)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    assert monitor_warnings(caught) == [
        f"mudpuppy: {message}; LoRA norms are not measured, no more lora events"
    ]
    events = read_events(tmp_path / "runs" / "sharded")
    assert [(e["kind"], e.get("step")) for e in events] == [
        ("start", None),
        ("lora", 1),
        ("end", 3),
    ]


def test_update_norms_of_large_and_small_cpu_groups_agree() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    # 2 x (4 x 150000 + 8 x 4) elements: over the size where the CPU path stops stacking
    as_ = [torch.randn(4, 150_000, generator=g) for _ in range(2)]
    bs = [torch.randn(8, 4, generator=g) for _ in range(2)]
    cpu = torch.device("cpu")
    large = mc._update_sq_norms(torch, cpu, as_, bs).tolist()
    small = [mc._update_sq_norms(torch, cpu, [a], [b]).item() for a, b in zip(as_, bs, strict=True)]
    dense = [float((b.double() @ a.double()).norm() ** 2) for a, b in zip(as_, bs, strict=True)]
    assert large == pytest.approx(dense, rel=1e-5)
    assert small == pytest.approx(dense, rel=1e-5)


def test_norms_of_a_small_adapter_set_take_few_operator_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    model = build_tiny_model()  # 4 modules of one shape: one group
    probe = mc.LoraProbe(model)
    expected = probe.norms()
    calls: list[str] = []
    for name in ("_foreach_norm", "bmm"):
        real = getattr(torch, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch, name, counting)
    assert probe.norms() == expected
    # one norm call for every A and B, and two batched Gram products for the whole group
    assert calls == ["_foreach_norm", "bmm", "bmm"]
