"""Every real fixture loads through the Monitor: counts and first/last values checked against the file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.sources.llamafactory import parse_duration
from tests.conftest import FIXTURES

LF = FIXTURES / "llamafactory"
HF = FIXTURES / "trainer_state"


def _complete_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file that end with a newline (a cut last line is not a row yet)."""
    data = path.read_bytes()
    body = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _load(tmp_path: Path, src: Path, dest: str, run: str = "run") -> Monitor:
    (tmp_path / run).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, tmp_path / run / dest)
    mon = Monitor(tmp_path, clock=lambda: 2e9)
    assert mon.refresh() == {run}
    return mon


LF_CASES = {
    # file: (rows, rows with loss, eval rows, learning-rate key)
    "nsllm_lr_multiday_eta.jsonl": (436, 435, 0, "lr"),
    "qwen_medical_lr_with_eval.jsonl": (330, 324, 6, "lr"),
    "qwen_medical_lr_with_eval.partial.jsonl": (330, 324, 6, "lr"),
    "mistral_translator_learning_rate_throughput_str.jsonl": (129, 129, 0, "learning_rate"),
    "mistral_translator_learning_rate_throughput_str.partial.jsonl": (129, 129, 0, "learning_rate"),
    "sunxiaochuan_progress_only_no_metrics.jsonl": (50, 0, 0, None),
}


@pytest.mark.parametrize("name", sorted(LF_CASES))
def test_llamafactory_fixture_loads(tmp_path: Path, name: str) -> None:
    n_rows, n_loss, n_eval, lr_key = LF_CASES[name]
    rows = _complete_rows(LF / name)
    assert len(rows) == n_rows
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert (len(train), len(evals)) == (n_loss, n_eval)

    mon = _load(tmp_path, LF / name, "trainer_log.jsonl")
    s = mon.summary("run")
    assert s is not None
    assert s.source == "llamafactory"
    assert s.bad_lines == 0
    assert s.step == rows[-1]["current_steps"]
    assert s.max_steps == rows[-1]["total_steps"]
    assert s.status == (
        "completed" if rows[-1]["current_steps"] >= rows[-1]["total_steps"] else "unknown"
    )
    counts = mon.counts("run")
    assert counts.get("loss", 0) == n_loss
    assert counts.get("eval_loss", 0) == n_eval
    if n_loss:
        got = mon.series("run", ["loss", "learning_rate", "epoch"], points=10**6)
        assert got["loss"]["x"] == [r["current_steps"] for r in train]
        assert got["loss"]["y"] == [r["loss"] for r in train]
        lrs = [r[lr_key] for r in train if lr_key in r]
        assert got["learning_rate"]["y"][0] == lrs[0] and got["learning_rate"]["y"][-1] == lrs[-1]
        assert "lr" not in counts  # stored under the one name all sources use
        assert s.loss == train[-1]["loss"]
        assert s.best_loss == min(r["loss"] for r in train)
        assert got["epoch"]["y"][-1] == train[-1]["epoch"]
    else:
        assert s.loss is None and s.best_loss is None
    if n_eval:
        ev = mon.series("run", ["eval_loss"], points=10**6)["eval_loss"]
        assert ev["x"] == [r["current_steps"] for r in evals]
        assert ev["y"] == [r["eval_loss"] for r in evals]
        assert s.eval_loss == evals[-1]["eval_loss"]
    # wall times: anchored on the file's mtime, spaced as the rows' elapsed times
    elapsed = [parse_duration(r["elapsed_time"]) for r in rows]
    assert s.last_event_t is not None and s.started_t is not None
    assert s.last_event_t - s.started_t == pytest.approx(elapsed[-1])


def test_multiday_durations_parse() -> None:
    rows = _complete_rows(LF / "nsllm_lr_multiday_eta.jsonl")
    assert rows[0]["remaining_time"] == "9 days, 21:39:23"
    assert parse_duration(rows[0]["remaining_time"]) == 9 * 86400 + 21 * 3600 + 39 * 60 + 23
    assert parse_duration(rows[-1]["elapsed_time"]) == 9 * 86400 + 22 * 3600 + 13 * 60 + 15
    assert parse_duration("0:00:24") == 24.0
    assert parse_duration("soon") is None


def test_throughput_strings_become_numbers(tmp_path: Path) -> None:
    name = "mistral_translator_learning_rate_throughput_str.jsonl"
    rows = _complete_rows(LF / name)
    assert rows[0]["throughput"] == "0.00"
    mon = _load(tmp_path, LF / name, "trainer_log.jsonl")
    got = mon.series("run", ["throughput", "total_tokens"], points=10**6)
    assert got["throughput"]["y"] == [float(r["throughput"]) for r in rows]
    assert got["total_tokens"]["count"] == len(rows)


def test_partial_file_completes_when_its_line_does(tmp_path: Path) -> None:
    name = "qwen_medical_lr_with_eval.partial.jsonl"
    data = (LF / name).read_bytes()
    cut = data[data.rfind(b"\n") + 1 :]
    assert cut and not cut.endswith(b"\n")
    mon = _load(tmp_path, LF / name, "trainer_log.jsonl")
    before = mon.counts("run")["loss"]
    # the writer finishes the line: now it counts, exactly once
    full = json.loads(
        cut.decode() + '0, "loss": 1.5, "lr": 6e-05, "epoch": 1.44, "elapsed_time": "3:15:00"}'
    )
    with open(tmp_path / "run" / "trainer_log.jsonl", "ab") as f:
        f.write(b'0, "loss": 1.5, "lr": 6e-05, "epoch": 1.44, "elapsed_time": "3:15:00"}\n')
    assert mon.refresh() == {"run"}
    assert mon.counts("run")["loss"] == before + 1
    s = mon.summary("run")
    assert s is not None and s.step == full["current_steps"] and s.loss == 1.5 and s.bad_lines == 0


HF_CASES = {
    # file: (train rows, eval rows, summary rows) as fixtures/README.md describes them
    "causal_lm_full_ft_with_eval_loss.json": (24, 6, 1),
    "old_transformers_no_grad_norm.json": (51, 0, 1),
    "classification_eval_accuracy_macro_f1.json": (20, 10, 0),
    "whisper_seq2seq_eval_wer.json": (5, 20, 0),
    "largest_dpo_slash_keys.json": (291, 29, 1),
}


def _split_history(state: dict) -> tuple[list[dict], list[dict], list[dict]]:
    train, evals, summary = [], [], []
    for r in state["log_history"]:
        if "train_runtime" in r:
            summary.append(r)
        elif any(k.startswith("eval_") for k in r):
            evals.append(r)
        else:
            train.append(r)
    return train, evals, summary


@pytest.mark.parametrize("name", sorted(HF_CASES))
def test_trainer_state_fixture_loads(tmp_path: Path, name: str) -> None:
    state = json.loads((HF / name).read_text())
    train, evals, summary = _split_history(state)
    assert (len(train), len(evals), len(summary)) == HF_CASES[name]

    mon = _load(tmp_path, HF / name, "trainer_state.json")
    s = mon.summary("run")
    assert s is not None
    assert s.source == "hf-trainer-state"
    assert s.bad_lines == 0
    assert s.step == state["global_step"]
    assert s.max_steps == state["max_steps"]
    assert s.num_train_epochs == state["num_train_epochs"]
    assert s.epoch == state["log_history"][-1]["epoch"]
    assert s.status == "completed"  # global_step reached max_steps in every one of them
    counts = mon.counts("run")
    assert counts["loss"] == len(train)
    assert counts.get("eval_loss", 0) == len(evals)
    got = mon.series("run", ["loss", "eval_loss", "grad_norm"], points=10**6)
    assert got["loss"]["x"] == [r["step"] for r in train]
    assert got["loss"]["y"] == [r["loss"] for r in train]
    assert s.loss == train[-1]["loss"]
    assert s.best_loss == min(r["loss"] for r in train)
    assert ("grad_norm" in got) == ("grad_norm" in train[0])
    if evals:
        assert got["eval_loss"]["x"] == [r["step"] for r in evals]
        assert got["eval_loss"]["y"] == [r["eval_loss"] for r in evals]
        assert s.eval_loss == evals[-1]["eval_loss"]
    if summary:
        assert s.steps_per_s == summary[0]["train_steps_per_second"]
        assert s.elapsed_s == summary[0]["train_runtime"]
    # no wall time in log_history: x=time has nothing to show, and says so
    assert mon.series("run", ["loss"], x="time")["loss"]["x"] == []


def test_open_metric_names_are_kept(tmp_path: Path) -> None:
    mon = _load(tmp_path, HF / "largest_dpo_slash_keys.json", "trainer_state.json")
    names = set(mon.counts("run"))
    assert {"rewards/accuracies", "logits/chosen", "eval_rewards/margins"} <= names
    mon2 = _load(tmp_path / "w", HF / "whisper_seq2seq_eval_wer.json", "trainer_state.json")
    wer = mon2.series("run", ["eval_wer"], points=10**6)["eval_wer"]["y"]
    state = json.loads((HF / "whisper_seq2seq_eval_wer.json").read_text())
    assert wer == [r["eval_wer"] for r in state["log_history"] if "eval_wer" in r]


@pytest.fixture(params=["trainer", "compact"])
def dump(request):
    """trainer_state.json as the Trainer writes it (read in chunks), or compact (parsed whole)."""
    if request.param == "trainer":
        return lambda state: json.dumps(state, indent=2, sort_keys=True) + "\n"
    return json.dumps


def test_newest_checkpoint_is_read_and_extends(tmp_path: Path, dump) -> None:
    """trainer_state in checkpoint-*/: the newest wins; a longer history only appends."""
    state = json.loads((HF / "causal_lm_full_ft_with_eval_loss.json").read_text())
    run = tmp_path / "out"
    early = dict(state, log_history=state["log_history"][:8], global_step=40)
    (run / "checkpoint-40").mkdir(parents=True)
    (run / "checkpoint-40" / "trainer_state.json").write_text(dump(early))
    mon = Monitor(tmp_path, clock=lambda: 2e9)
    assert mon.refresh() == {"out"}
    g0 = mon.generation("out")
    n_early = sum(1 for r in early["log_history"] if "loss" in r)
    assert mon.counts("out")["loss"] == n_early
    s = mon.summary("out")
    assert s is not None and s.step == 40 and s.status != "completed"
    (run / "checkpoint-120").mkdir()
    (run / "checkpoint-120" / "trainer_state.json").write_text(dump(state))
    assert mon.refresh() == {"out"}
    assert mon.generation("out") == g0  # same history, longer: appended, not reset
    assert mon.counts("out")["loss"] == 24
    detail = mon.detail("out")
    assert detail is not None
    ckpts = [m for m in detail["markers"] if m["kind"] == "checkpoint"]
    assert [m["step"] for m in ckpts] == [40, 120]
    s = mon.summary("out")
    assert s is not None and s.step == 120 and s.status == "completed"


def test_rewritten_history_resets_the_run(tmp_path: Path, dump) -> None:
    state = json.loads((HF / "causal_lm_full_ft_with_eval_loss.json").read_text())
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "trainer_state.json"
    path.write_text(dump(state))
    mon = Monitor(tmp_path, clock=lambda: 2e9)
    mon.refresh()
    g0 = mon.generation("out")
    other = dict(state, log_history=state["log_history"][3:])
    path.write_text(dump(other) + " ")
    assert mon.refresh() == {"out"}
    assert mon.generation("out") != g0
    assert mon.counts("out")["loss"] == 24 - 3
    assert not math.isnan(mon.summary("out").loss)  # type: ignore[union-attr]


def test_transformers5_train_rows_with_runtime_keep_their_loss_and_do_not_end_the_run(
    tmp_path: Path, dump
) -> None:
    # with include_num_input_tokens_seen, transformers 5 adds train_runtime and
    # train_tokens_per_second to every train row; only the closing row ends the run
    rows = [
        {"epoch": 0.1 * s, "grad_norm": 0.5, "learning_rate": 1e-3, "loss": 5.0 - s / 10,
         "num_input_tokens_seen": 128 * s, "step": s, "train_runtime": 0.01 * s,
         "train_tokens_per_second": 9000.0}
        for s in (1, 2, 3)
    ]  # fmt: skip
    run = tmp_path / "job"
    run.mkdir()
    state = {"log_history": rows, "max_steps": 30, "global_step": 3, "num_train_epochs": 1}
    (run / "trainer_state.json").write_text(dump(state))
    mon = Monitor(tmp_path, pid_alive=lambda pid: True)
    mon.refresh()
    loss = mon.series("job", ["loss"])["loss"]
    assert loss["x"] == [1, 2, 3]
    assert loss["y"] == [4.9, 4.8, 4.7]
    assert "train_runtime" not in mon.detail("job")["series"]
    assert mon.summary("job").status != "completed"
    rows.append({"step": 3, "epoch": 0.3, "train_runtime": 0.05, "train_loss": 4.8,
                 "train_steps_per_second": 60.0, "total_flos": 1.0})  # fmt: skip
    (run / "trainer_state.json").write_text(dump(state))
    mon.refresh()
    assert mon.summary("job").status == "completed"


def test_trainer_state_with_bare_nan_tokens_keeps_updating(tmp_path: Path, dump) -> None:
    # json.dump (as transformers writes trainer_state.json) puts bare NaN for a NaN loss
    run = tmp_path / "job"
    run.mkdir()
    rows = [{"step": 1, "loss": 2.5, "epoch": 0.1}, {"step": 2, "loss": math.nan, "epoch": 0.2}]
    state = {"log_history": rows, "max_steps": 10, "global_step": 2}
    (run / "trainer_state.json").write_text(dump(state))
    assert "NaN" in (run / "trainer_state.json").read_text()
    mon = Monitor(tmp_path, pid_alive=lambda pid: True)
    mon.refresh()
    loss = mon.series("job", ["loss"])["loss"]
    assert loss["x"] == [1, 2]
    assert loss["y"][0] == 2.5 and math.isnan(loss["y"][1])
    assert not mon.detail("job")["errors"]
    assert mon.summary("job").nonfinite == 1


def test_a_state_file_caught_mid_write_is_read_whole_once_complete(tmp_path: Path) -> None:
    """The Trainer writes trainer_state.json in place: a reader can see it cut anywhere."""
    rows = [{"epoch": s / 100, "loss": 3.0 - s / 100, "step": s} for s in range(1, 201)]
    full = json.dumps({"global_step": 200, "log_history": rows}, indent=2, sort_keys=True)
    run = tmp_path / "job"
    run.mkdir()
    path = run / "trainer_state.json"
    cut = full.index('"step": 150')  # after 149 complete rows
    path.write_text(full[:cut])
    mon = Monitor(tmp_path, pid_alive=lambda pid: True)
    mon.refresh()
    path.write_text(full + "\n")
    for _ in range(3):  # the run is read again from the start; never a row twice
        mon.refresh()
    loss = mon.series("job", ["loss"], points=10_000)["loss"]
    assert loss["x"] == list(range(1, 201))
    assert not mon.detail("job")["errors"]  # type: ignore[index]
    assert mon.summary("job").step == 200  # type: ignore[union-attr]


def test_checkpoint_states_read_in_chunks_decode_only_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mudpuppy_monitor.core.sources import hf_scan

    monkeypatch.setattr(hf_scan, "READ_BYTES", 4096)
    decoded: list[int] = []
    real_decode = hf_scan._decode

    def counting(chunk: bytes) -> list:
        rows = real_decode(chunk)
        decoded.append(len(rows))
        return rows

    monkeypatch.setattr(hf_scan, "_decode", counting)
    rows = [{"loss": 1.0 + (s % 7) / 10, "step": s} for s in range(1, 3001)]
    run = tmp_path / "out"
    mon = Monitor(tmp_path, pid_alive=lambda pid: True)
    for n in (1000, 2000, 3000):
        d = run / f"checkpoint-{n}"
        d.mkdir(parents=True)
        state = {"global_step": n, "log_history": rows[:n], "max_steps": 3000}
        (d / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        decoded.clear()
        mon.refresh()
        assert sum(decoded) == 1000  # the 1,000 new rows, not the ones read before
        assert len(decoded) > 5  # in chunks of about 4 KiB
    loss = mon.series("out", ["loss"], points=10_000)["loss"]
    assert loss["x"] == list(range(1, 3001))
    assert mon.summary("out").status == "completed"  # type: ignore[union-attr]


def test_an_unreadable_state_file_is_tried_again_without_changing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mudpuppy_monitor.core.sources import hf

    run = tmp_path / "job"
    run.mkdir()
    state = {"global_step": 1, "log_history": [{"loss": 2.0, "step": 1}]}
    (run / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    real_open = hf.open_regular
    denied = [True]

    def open_regular(path: str, root: str | None):  # type: ignore[no-untyped-def]
        if denied[0]:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, root)

    monkeypatch.setattr(hf, "open_regular", open_regular)
    mon = Monitor(tmp_path, pid_alive=lambda pid: True)
    mon.refresh()
    assert mon.summary("job").error == "trainer_state.json: Permission denied"  # type: ignore[union-attr]
    assert mon.refresh() == set()  # the same error again is not news
    denied[0] = False  # made readable: same file, same mtime
    assert mon.refresh() == {"job"}
    assert mon.summary("job").error is None  # type: ignore[union-attr]
    assert mon.series("job", ["loss"])["loss"]["y"] == [2.0]
