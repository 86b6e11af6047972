"""The startup hook in this process: real Trainers and peft LoRA models, a patched Trainer class
(restored after each test), a real post-import finder on a real module."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import MonitorCallback, decode_line

from mudpuppy_monitor.launch import hook
from mudpuppy_monitor.launch.ending import write_meta
from mudpuppy_monitor.tinytrain import _SyntheticTokens, build_tiny_model, build_tiny_trainer

pytest.importorskip("transformers")
pytest.importorskip("peft")


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def settings_env(tmp_path: Path, *, attach: bool) -> dict[str, str]:
    return {
        hook.ENV_ROOT: str(tmp_path / "runs"),
        hook.ENV_NAME: "job",
        hook.ENV_ATTACH: "1" if attach else "0",
        hook.ENV_LORA_EVERY: "2",
        hook.ENV_HANDOFF: str(tmp_path / "handoff"),
    }


@pytest.fixture
def restore_trainer() -> Iterator[None]:
    from transformers import Trainer

    original = Trainer.__init__
    try:
        yield
    finally:
        Trainer.__init__ = original  # type: ignore[method-assign]


def plain_trainer(tmp_path: Path, steps: int = 3, cls: Any = None) -> Any:
    """A Trainer as a user builds one: no callback of ours."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    return (cls or Trainer)(
        model=build_tiny_model(), args=args, train_dataset=_SyntheticTokens(64, 0)
    )


def injected(trainer: Any) -> list[Any]:
    return [cb for cb in trainer.callback_handler.callbacks if getattr(cb, "_mudpuppy_injected", 0)]


def test_every_trainer_records_into_the_launchers_run(
    tmp_path: Path, restore_trainer: None
) -> None:
    run_dir = tmp_path / "runs" / "job"
    run_dir.mkdir(parents=True)
    write_meta(run_dir, name="job", command=["python", "train.py"])
    launcher_meta = json.loads((run_dir / "meta.json").read_text())
    assert hook.install(settings_env(tmp_path, attach=True)) is True
    trainer = plain_trainer(tmp_path)
    assert len(injected(trainer)) == 1
    trainer.train()
    got = events(run_dir)
    assert [e["kind"] for e in got][:1] == ["start"] and "resumed_from" not in got[0]
    assert (got[-1]["kind"], got[-1]["status"], got[-1]["step"]) == ("end", "completed", 3)
    assert [e["step"] for e in got if e["kind"] == "lora"] == [2, 3]  # lora_every from settings
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["run_id"] == launcher_meta["run_id"] == got[0]["run_id"]
    assert meta["config"]["method"] == "lora"
    assert (tmp_path / "handoff").read_text() == str(run_dir)


def test_a_second_trainer_of_the_job_gets_its_own_run(
    tmp_path: Path, restore_trainer: None
) -> None:
    (tmp_path / "runs" / "job").mkdir(parents=True)
    hook.install(settings_env(tmp_path, attach=True))
    plain_trainer(tmp_path, steps=2).train()
    plain_trainer(tmp_path, steps=2).train()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["job", "job-2"]
    assert [e["kind"] for e in events(tmp_path / "runs" / "job")].count("start") == 1
    assert (tmp_path / "handoff").read_text() == str(tmp_path / "runs" / "job")  # the first


def test_a_trainer_with_its_own_monitor_keeps_it_and_reports_its_run(
    tmp_path: Path, restore_trainer: None
) -> None:
    hook.install(settings_env(tmp_path, attach=False))
    trainer = build_tiny_trainer(tmp_path / "theirs", "mine", steps=2, output_dir=tmp_path / "o")
    (ours,) = injected(trainer)
    trainer.train()
    assert ours.writer is None  # inert: one run, the user's
    assert not (tmp_path / "runs").exists()
    assert (tmp_path / "handoff").read_text() == str(tmp_path / "theirs" / "mine")
    assert events(tmp_path / "theirs" / "mine")[-1]["status"] == "completed"


def test_a_subclass_gets_one_callback_and_a_callback_added_later_is_respected(
    tmp_path: Path, restore_trainer: None
) -> None:
    from transformers import Trainer

    class SFTLike(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.extra = True

    hook.install(settings_env(tmp_path, attach=False))
    trainer = plain_trainer(tmp_path, steps=2, cls=SFTLike)
    assert len(injected(trainer)) == 1 and trainer.extra
    trainer.add_callback(MonitorCallback(tmp_path / "later", name="added"))
    trainer.train()
    assert not (tmp_path / "runs").exists()
    assert (tmp_path / "handoff").read_text() == str(tmp_path / "later" / "added")


def test_install_without_or_with_bad_settings_does_nothing(
    capsys: pytest.CaptureFixture[str], restore_trainer: None
) -> None:
    from transformers import Trainer

    assert hook.install({}) is False
    assert hook.install({hook.ENV_ROOT: "/runs"}) is False  # no name, no hand-off file
    bad = {hook.ENV_ROOT: "/r", hook.ENV_NAME: "n", hook.ENV_HANDOFF: "/h"}
    assert hook.install({**bad, hook.ENV_LORA_EVERY: "-5"}) is False
    assert not getattr(Trainer.__init__, "_mudpuppy_patched", False)
    assert capsys.readouterr().err.count("ignoring unusable MUDPUPPY_LAUNCH_* settings") == 2


def test_the_post_import_finder_runs_after_the_module_and_steps_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "late_pkg").mkdir()
    (tmp_path / "late_pkg" / "__init__.py").write_text("")
    (tmp_path / "late_pkg" / "trainer.py").write_text("class Trainer:\n    made = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[Any] = []
    finder = hook.PostImportFinder("late_pkg.trainer", seen.append)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import late_pkg  # noqa: F401  (the parent alone: not the watched module)

    assert seen == [] and finder in sys.meta_path
    import late_pkg.trainer as mod

    assert seen == [mod] and mod.Trainer.made
    assert finder not in sys.meta_path
    assert type(mod.__loader__).__name__ == "SourceFileLoader"  # not our wrapper
    for name in ("late_pkg.trainer", "late_pkg"):
        sys.modules.pop(name, None)


def test_report_keeps_the_first_directory(tmp_path: Path) -> None:
    handoff = str(tmp_path / "handoff")
    hook.report(handoff, tmp_path / "a")
    hook.report(handoff, tmp_path / "b")
    assert (tmp_path / "handoff").read_text() == str(tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handoff"]  # no temporary file left
