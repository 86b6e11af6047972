"""RunWriter on the real filesystem: layout, events, failures, exit paths."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mudpuppy_callback as mc
import numpy as np
import pytest
from mudpuppy_callback import MonitorWarning, RunWriter, decode_line

# the file under test, as a user would copy it
CALLBACK_FILE = Path(__file__).resolve().parents[1] / "callback" / "mudpuppy_callback.py"


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    return [decode_line(line) for line in lines]


def strict_lines(run_dir: Path) -> list[Any]:
    def reject(token: str) -> Any:
        raise ValueError(token)

    text = (run_dir / "events.jsonl").read_text()
    return [json.loads(line, parse_constant=reject) for line in text.splitlines()]


@pytest.fixture
def monitor_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def only_monitor(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]


def test_plain_loop_writes_meta_and_events(tmp_path: Path) -> None:
    clock = FakeClock()
    with RunWriter(tmp_path / "runs", name="plain-loop", config={"lr": 3e-4}, clock=clock) as run:
        assert run.dir == tmp_path / "runs" / "plain-loop"
        clock.t += 1
        assert run.log(1, {"loss": 2.5, "learning_rate": 3e-4}, epoch=0.1)
        clock.t += 1
        assert run.log_eval(1, {"eval_loss": 2.25, "accuracy": 0.5})
        assert run.checkpoint(1, "out/checkpoint-1")
    meta = json.loads((run.dir / "meta.json").read_text())
    assert meta["format"] == "mudpuppy-run/1"
    assert meta["name"] == "plain-loop"
    assert meta["run_id"] == run.run_id and len(meta["run_id"]) == 32
    assert meta["created"] == 1_700_000_000.0
    assert meta["pid"] == os.getpid() and meta["ppid"] == os.getppid()
    assert meta["argv"] == sys.argv
    assert meta["config"] == {"lr": 3e-4}
    assert meta["versions"]["mudpuppy_callback"] == mc.__version__
    assert meta["world_size"] == 1 and meta["max_steps"] is None and meta["gpus"] == []
    assert sorted(os.listdir(run.dir)) == ["events.jsonl", "meta.json"]  # no temp file left
    events = read_events(run.dir)
    assert [e["kind"] for e in events] == ["start", "metrics", "eval", "checkpoint", "end"]
    assert [e["seq"] for e in events] == [0, 1, 2, 3, 4]
    assert events[0]["run_id"] == run.run_id
    assert events[1] == {
        "v": 1,
        "seq": 1,
        "t": 1_700_000_001.0,
        "kind": "metrics",
        "step": 1,
        "epoch": 0.1,
        "values": {"loss": 2.5, "learning_rate": 3e-4},
    }
    assert events[2]["values"] == {"eval_loss": 2.25, "eval_accuracy": 0.5}
    assert events[3]["path"] == "out/checkpoint-1"
    assert events[4] == {
        "v": 1,
        "seq": 4,
        "t": 1_700_000_002.0,
        "kind": "end",
        "status": "completed",
        "step": 1,
    }
    assert run.closed


def test_taken_name_gets_a_fresh_directory(tmp_path: Path) -> None:
    dirs = []
    for _ in range(3):
        with RunWriter(tmp_path, name="sweep/lr") as run:
            dirs.append(run.dir)
    assert dirs == [
        tmp_path / "sweep" / "lr",
        tmp_path / "sweep" / "lr-2",
        tmp_path / "sweep" / "lr-3",
    ]
    assert (
        json.loads((tmp_path / "sweep" / "lr-3" / "meta.json").read_text())["name"] == "sweep/lr-3"
    )


def test_resume_appends_a_new_start_and_continues_seq(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="r") as run:
        run.log(10, {"loss": 1.0})
    first_id = run.run_id
    with RunWriter(tmp_path, name="r", resume=True) as again:
        again.log(11, {"loss": 0.5})
    assert again.dir == run.dir and again.run_id == first_id
    events = read_events(run.dir)
    assert [(e["seq"], e["kind"]) for e in events] == [
        (0, "start"),
        (1, "metrics"),
        (2, "end"),
        (3, "start"),
        (4, "metrics"),
        (5, "end"),
    ]
    assert events[3]["resumed_from"] == 10


@pytest.mark.parametrize("lora_bytes", [100_000, 1_040_000])
def test_resume_after_a_last_line_longer_than_the_first_window(
    tmp_path: Path, lora_bytes: int
) -> None:
    # A process killed right after a big `lora` event: no `end`, and the last line alone is
    # longer than the 64 KiB read first.
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    n = lora_bytes // 116  # about 114 bytes per module
    layers = {f"model.layers.{i}.self_attn.{'q' * 60}_proj": {"A": 1.0, "B": 0.5} for i in range(n)}
    lines = [
        mc.encode_line({"v": 1, "seq": 0, "t": 1.0, "kind": "start", "run_id": "ab" * 16}),
        mc.encode_line({"v": 1, "seq": 1, "t": 2.0, "kind": "metrics", "step": 10, "values": {}}),
        mc.encode_line({"v": 1, "seq": 2, "t": 3.0, "kind": "lora", "step": 12, "layers": layers}),
    ]
    assert 1 << 16 < 0.95 * lora_bytes < len(lines[2]) <= mc.MAX_LINE_BYTES
    (run_dir / "events.jsonl").write_bytes(b"".join(lines))
    with RunWriter(tmp_path, name="r", resume=True) as run:
        run.log(13, {"loss": 0.5})
    events = read_events(run_dir)
    assert [(e["seq"], e["kind"], e.get("step")) for e in events[3:]] == [
        (3, "start", None),
        (4, "metrics", 13),
        (5, "end", 13),
    ]
    assert events[3]["resumed_from"] == 12


def test_resume_after_a_torn_last_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="r") as run:
        run.log(1, {"loss": 1.0})
    with open(run.dir / "events.jsonl", "ab") as f:
        f.write(b'{"v":1,"seq":3,"t":1,"kind":"metr')  # a crash mid-line
    with RunWriter(tmp_path, name="r", resume=True) as again:
        again.log(2, {"loss": 0.5})
    lines = (run.dir / "events.jsonl").read_bytes().splitlines()
    assert lines[3] == b'{"v":1,"seq":3,"t":1,"kind":"metr'
    assert decode_line(lines[4])["kind"] == "start"
    assert decode_line(lines[5])["values"] == {"loss": 0.5}


def test_exception_in_the_block_ends_failed_with_the_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RunWriter(tmp_path, name="x") as run:
        run.log(3, {"loss": 1.0})
        raise RuntimeError("boom at step 3")
    end = read_events(run.dir)[-1]
    assert end["kind"] == "end"
    assert end["status"] == "failed"
    assert end["step"] == 3
    assert end["error"] == "RuntimeError: boom at step 3"


def test_keyboard_interrupt_ends_interrupted(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), RunWriter(tmp_path, name="x") as run:
        raise KeyboardInterrupt
    end = read_events(run.dir)[-1]
    assert (end["status"], "error" in end) == ("interrupted", False)


def test_close_twice_writes_one_end(tmp_path: Path) -> None:
    run = RunWriter(tmp_path, name="x")
    run.close()
    run.close("failed")
    assert run.log(1, {"loss": 1.0}) is False
    assert [e["kind"] for e in read_events(run.dir)] == ["start", "end"]


def test_values_numpy_torch_ints_and_non_numeric(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    import torch

    with RunWriter(tmp_path, name="x") as run:
        values = {
            "f": 0.5,
            "i": 7,
            "np32": np.float32(0.25),
            "np64": np.float64(-1.5),
            "npint": np.int64(12),
            "np0d": np.array(3.5),
            "t0": torch.tensor(1.25),
            "tbf16": torch.tensor(2.0, dtype=torch.bfloat16),
            "tint": torch.tensor(9),
            "t1": torch.tensor([4.5]),
            "text": "hello",
            "flag": True,
            "vec": torch.ones(3),
            "none": None,
        }
        run.log(1, values)
        run.log(2, {"text": "again", "f": 1.0})
    events = read_events(run.dir)
    assert events[1]["values"] == {
        "f": 0.5,
        "i": 7.0,
        "np32": 0.25,
        "np64": -1.5,
        "npint": 12.0,
        "np0d": 3.5,
        "t0": 1.25,
        "tbf16": 2.0,
        "tint": 9.0,
        "t1": 4.5,
    }
    assert list(events[1]["values"]) == [
        "f",
        "i",
        "np32",
        "np64",
        "npint",
        "np0d",
        "t0",
        "tbf16",
        "tint",
        "t1",
    ]
    raw = strict_lines(run.dir)[1]["values"]
    assert raw["i"] == 7 and isinstance(raw["i"], int)  # ints stay ints (tokens_seen)
    # one warning per dropped key, not per call
    assert sorted(only_monitor(monitor_warnings)) == sorted(
        f"mudpuppy: value of {k!r} is not a number; it is not recorded"
        for k in ("text", "flag", "vec", "none")
    )


def test_integers_beyond_float_range_are_written_as_infinity(tmp_path: Path) -> None:
    class Huge:  # an Integral that is not an int (a numbers.Integral subclass)
        def __index__(self) -> int:
            return -(10**400)

    import numbers

    numbers.Integral.register(Huge)
    with RunWriter(tmp_path, name="x") as run:
        assert run.log(1, {"big": 10**400, "neg": Huge(), "max": 2**1023, "n": 7}, epoch=10**400)
        assert run.log_lora(1, {"m.q": {"A": 10**400}})
    raw = strict_lines(run.dir)
    assert raw[1]["values"] == {"big": "Infinity", "neg": "-Infinity", "max": 2**1023, "n": 7}
    assert raw[1]["epoch"] == "Infinity"
    assert raw[2]["layers"] == {"m.q": {"A": "Infinity"}}
    events = read_events(run.dir)  # every line reads back
    assert events[1]["values"] == {"big": math.inf, "neg": -math.inf, "max": 2.0**1023, "n": 7.0}


def test_steps_outside_int64_are_refused_with_one_warning(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    with RunWriter(tmp_path, name="x") as run:
        assert run.log(2**63, {"loss": 1.0}) is False
        assert run.log(-1, {"loss": 1.0}) is False
        assert run.checkpoint(2**63, "out/checkpoint-x") is False
        assert run.log(2**63 - 1, {"loss": 1.0}) is True
    assert only_monitor(monitor_warnings) == [
        "mudpuppy: log failed (ValueError: step must be an integer in [0, 2**63), got "
        "9223372036854775808); nothing recorded",
        "mudpuppy: checkpoint failed (ValueError: step must be an integer in [0, 2**63), got "
        "9223372036854775808); nothing recorded",
    ]
    events = read_events(run.dir)  # the decoder accepts everything that was written
    assert [(e["kind"], e.get("step")) for e in events] == [
        ("start", None),
        ("metrics", 2**63 - 1),
        ("end", 2**63 - 1),
    ]


def test_tensor_values_of_mixed_dtypes_in_one_dict() -> None:
    import torch

    out, dropped = mc._convert_values(
        {
            "a": torch.tensor(1.5, dtype=torch.float16),
            "b": torch.tensor(3),
            "c": torch.tensor(0.1, dtype=torch.float64),
        }
    )
    assert out == {"a": 1.5, "b": 3.0, "c": 0.1}
    assert dropped == []


def test_host_lists_reads_many_vectors_in_order() -> None:
    import torch

    flats = [
        torch.tensor([1.5, 2.5]),
        torch.tensor([], dtype=torch.float32),
        torch.tensor([7, 8, 9]),
        torch.tensor([0.25], dtype=torch.bfloat16),
    ]
    assert mc._host_lists(torch, flats) == [[1.5, 2.5], [], [7, 8, 9], [0.25]]
    assert mc._host_lists(torch, []) == []


def test_a_float_epoch_is_not_converted_a_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    calls: list[list[str]] = []
    convert = mc._convert_values

    def counting(values: Any) -> Any:
        calls.append(list(values))
        return convert(values)

    monkeypatch.setattr(mc, "_convert_values", counting)
    with RunWriter(tmp_path, name="x") as run:
        run.log(1, {"loss": 1.0}, epoch=0.5)  # what the Trainer passes: a float
        run.log(2, {"loss": 1.0}, epoch=torch.tensor(0.75))  # anything else is converted
        run.log(3, {"loss": 1.0}, epoch=2)
    assert calls == [["loss"], ["loss"], ["epoch"], ["loss"], ["epoch"]]
    assert [e.get("epoch") for e in read_events(run.dir)] == [None, 0.5, 0.75, 2.0, None]
    raw = strict_lines(run.dir)
    assert type(raw[3]["epoch"]) is float  # an int epoch is written as a float


def test_nan_and_infinity_are_strict_json_and_read_back(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="x") as run:
        run.log(1, {"loss": math.nan, "grad_norm": math.inf, "m": -math.inf}, epoch=math.nan)
        run.log_lora(1, {"model.layers.0.mlp.up_proj": {"A": math.nan, "B": 1.0}})
    raw = strict_lines(run.dir)  # json.loads rejecting bare NaN accepts every line
    assert raw[1]["values"] == {"loss": "NaN", "grad_norm": "Infinity", "m": "-Infinity"}
    assert raw[1]["epoch"] == "NaN"
    assert raw[2]["layers"] == {"model.layers.0.mlp.up_proj": {"A": "NaN", "B": 1.0}}
    values = read_events(run.dir)[1]["values"]
    assert (
        math.isnan(values["loss"]) and values["grad_norm"] == math.inf and values["m"] == -math.inf
    )


def test_round_trip_writer_to_decoder(tmp_path: Path) -> None:
    import torch

    written = [
        {"loss": 2.0 / 3.0, "learning_rate": 1e-5, "tokens_seen": 123456789},
        {"loss": 1e-300, "grad_norm": 1.7976931348623157e308, "x": -0.0},
    ]
    layers = {"model.layers.31.mlp.down_proj": {"A": 0.1, "B": 1e-12, "update": 3.0}}
    with RunWriter(tmp_path, name="x") as run:
        for step, values in enumerate(written, start=1):
            run.log(step, values, epoch=step / 3)
        run.log_lora(2, layers)
        run.log_eval(2, {"eval_loss": torch.tensor(0.3, dtype=torch.float64)})
    events = read_events(run.dir)
    assert [e["values"] for e in events[1:3]] == written
    assert [e["epoch"] for e in events[1:3]] == [1 / 3, 2 / 3]
    assert events[3]["layers"] == layers
    assert events[4]["values"] == {"eval_loss": 0.3}


def test_progress_is_throttled_to_every_two_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    with RunWriter(tmp_path, name="x", clock=clock) as run:
        assert run.progress(1) is False  # `start` was just written
        clock.t += 1.9
        assert run.progress(2) is False
        clock.t += 0.1
        assert run.progress(3) is True
        clock.t += 1.0
        run.log(4, {"loss": 1.0})  # any event restarts the 2 s
        clock.t += 1.5
        assert run.progress(5) is False
        clock.t += 0.5
        assert run.progress(6) is True
        clock.t -= 100  # the wall clock jumped back
        assert run.progress(7) is False
        clock.t += 2
        assert run.progress(8) is True
    progress = [e["step"] for e in read_events(run.dir) if e["kind"] == "progress"]
    assert progress == [3, 6, 8]


def test_non_zero_rank_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with RunWriter(tmp_path / "runs", name="x") as run:
        assert run.log(1, {"loss": 1.0}) is False
        run.progress(1)
    assert run.dir is None and run.closed
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("RANK", "0")
    with RunWriter(tmp_path / "runs", name="x") as run:
        pass
    assert run.dir == tmp_path / "runs" / "x"


@pytest.mark.parametrize(
    "name, dir_name",
    [
        ("two\nlines", "two_lines"),
        ("uni-\u202etxt.exe", "uni-_txt.exe"),
        ("iso\u2066late\u2069d", "iso_late_d"),
        ("bell\x07\x1b[31mred", "bell__[31mred"),
        ("c1\x85next", "c1_next"),
        ("sweep/lr\t1e-4", "sweep/lr_1e-4"),
    ],
)
def test_names_with_control_or_bidi_characters_are_cleaned(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage], name: str, dir_name: str
) -> None:
    with RunWriter(tmp_path, name=name) as run:
        run.log(1, {"loss": 1.0})
    assert run.dir == tmp_path / dir_name
    assert run.name == dir_name
    assert json.loads((run.dir / "meta.json").read_text())["name"] == dir_name
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and repr(dir_name) in messages[0]


def test_ordinary_unicode_names_are_kept(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    with RunWriter(tmp_path, name="qwen-lora-\u00e9t\u00e9-\u5b66\u4e60") as run:
        pass
    assert run.name == "qwen-lora-\u00e9t\u00e9-\u5b66\u4e60"
    assert only_monitor(monitor_warnings) == []


@pytest.mark.parametrize("name", ["", "../escape", "/abs", "a/../../b", "a/./b"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid run name|relative"):
        RunWriter(tmp_path, name=name or "/")


def test_root_that_is_a_file_gives_one_warning_and_no_exception(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    root = tmp_path / "file"
    root.write_text("not a directory")
    with RunWriter(root, name="x") as run:
        assert run.log(1, {"loss": 1.0}) is False
        run.progress(2)
    assert run.dir is None
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and "cannot write the run directory" in messages[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_root_gives_one_warning(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    tmp_path.chmod(0o555)
    try:
        with RunWriter(tmp_path, name="x") as run:
            run.log(1, {"loss": 1.0})
    finally:
        tmp_path.chmod(0o755)
    assert len(only_monitor(monitor_warnings)) == 1


def test_deleted_run_directory_gives_one_warning_and_is_not_recreated(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    clock = FakeClock()
    run = RunWriter(tmp_path, name="x", clock=clock)
    run.log(1, {"loss": 1.0})
    shutil.rmtree(run.dir)
    for step in range(2, 6):
        clock.t += 10  # well past any retry interval
        assert run.log(step, {"loss": 1.0}) is False
    run.close()
    assert not (tmp_path / "x").exists()
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and "deleted" in messages[0]
    # the warning says what happens: writing stops for good, it is not retried
    assert "records nothing more" in messages[0] and "until" not in messages[0]
    assert run.dropped == 5  # four metrics and the end


def test_link_count_is_checked_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    clock = FakeClock()
    run = RunWriter(tmp_path, name="x", clock=clock)  # `start` checked the link count
    real_fstat = os.fstat
    calls: list[int] = []

    def counting_fstat(fd: int) -> os.stat_result:
        calls.append(fd)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", counting_fstat)
    for step in range(1, 101):  # 100 lines within half a second: no syscall for any of them
        clock.t += 0.005
        assert run.log(step, {"loss": 1.0}) is True
    assert calls == []
    clock.t += 0.5  # a second after the last check
    assert run.log(101, {"loss": 1.0}) is True
    assert len(calls) == 1
    shutil.rmtree(run.dir)
    calls.clear()  # rmtree itself calls fstat
    clock.t += 0.5
    assert run.log(102, {"loss": 1.0}) is True  # into the unlinked file: not checked yet
    clock.t += 0.5
    assert run.log(103, {"loss": 1.0}) is False  # stopped within a second of the deletion
    assert run.log(104, {"loss": 1.0}) is False
    run.close()
    assert len(calls) == 1 and run.dropped == 3  # 103, 104 and the end
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and "deleted" in messages[0]


def test_deletion_is_noticed_before_end_however_soon(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    clock = FakeClock()
    run = RunWriter(tmp_path, name="x", clock=clock)
    shutil.rmtree(run.dir)
    run.close()  # no time passed, but `end` always checks
    assert run.dropped == 1
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and "deleted" in messages[0]


def _dup_dev_full_over(path: Path) -> None:
    """Point the descriptor this process holds on `path` at /dev/full: writes fail ENOSPC."""
    target = os.path.realpath(path)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{name}") == target:
                    os.dup2(full, int(name))
                    return
            except OSError:
                continue
        raise AssertionError(f"no open descriptor on {target}")
    finally:
        os.close(full)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_gives_one_warning_then_writing_resumes(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    clock = FakeClock()
    run = RunWriter(tmp_path, name="x", clock=clock, retry_every_s=5.0)
    run.log(1, {"loss": 1.0})
    _dup_dev_full_over(run.dir / "events.jsonl")
    assert run.log(2, {"loss": 2.0}) is False  # ENOSPC
    clock.t += 4.0
    assert run.log(3, {"loss": 3.0}) is False  # before the retry time: not even tried
    clock.t += 1.0
    assert run.log(4, {"loss": 4.0}) is True  # reopened the file: space is back
    run.close()
    messages = only_monitor(monitor_warnings)
    assert len(messages) == 1 and "No space left on device" in messages[0]
    events = read_events(run.dir)
    assert [(e["seq"], e["kind"], e.get("step")) for e in events] == [
        (0, "start", None),
        (1, "metrics", 1),
        (2, "metrics", 4),
        (3, "end", 4),
    ]
    assert events[-1]["dropped"] == 2


def test_line_over_one_mib_is_not_written(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    layers = {f"model.layers.{i}.self_attn.q_proj.{'x' * 200}": {"A": 1.0} for i in range(6000)}
    with RunWriter(tmp_path, name="x") as run:
        assert run.log_lora(1, layers) is False
        assert run.log(1, {"loss": 1.0}) is True
    assert [e["kind"] for e in read_events(run.dir)] == ["start", "metrics", "end"]
    assert len(only_monitor(monitor_warnings)) == 1


def _run_python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unclosed_writer_at_exit_ends_interrupted(tmp_path: Path) -> None:
    code = f"""
        import sys; sys.path.insert(0, {str(CALLBACK_FILE.parent)!r})
        from mudpuppy_callback import RunWriter
        run = RunWriter({str(tmp_path)!r}, name="left-open")
        run.log(5, {{"loss": 1.0}})
        keep = run  # never closed
    """
    proc = _run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    end = read_events(tmp_path / "left-open")[-1]
    assert (end["kind"], end["status"], end["step"]) == ("end", "interrupted", 5)


def test_program_dying_of_an_exception_ends_failed(tmp_path: Path) -> None:
    code = f"""
        import sys; sys.path.insert(0, {str(CALLBACK_FILE.parent)!r})
        from mudpuppy_callback import RunWriter
        run = RunWriter({str(tmp_path)!r}, name="crash")
        run.log(2, {{"loss": 1.0}})
        raise ValueError("diverged")
    """
    proc = _run_python(code, tmp_path)
    assert proc.returncode == 1 and "ValueError: diverged" in proc.stderr
    end = read_events(tmp_path / "crash")[-1]
    assert (end["status"], end["error"]) == ("failed", "ValueError: diverged")


def test_single_file_copied_alone_imports_and_writes_a_run(tmp_path: Path) -> None:
    lonely = tmp_path / "repo"
    lonely.mkdir()
    shutil.copy(CALLBACK_FILE, lonely / "mudpuppy_callback.py")
    # -I: no environment, no user site; -S: no site-packages at all. Only the stdlib and the copy.
    code = """
        import sys
        sys.path.insert(0, ".")
        import mudpuppy_callback
        with mudpuppy_callback.RunWriter("runs", name="copied", config={"lr": 1e-3}) as run:
            run.log(1, {"loss": float("nan")})
            run.progress(1)
        print(mudpuppy_callback.__file__)
        print(sorted(m for m in ("torch", "transformers", "numpy") if m in sys.modules))
    """
    proc = _run_python(code, lonely, "-I", "-S")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert Path(out[0]).resolve() == (lonely / "mudpuppy_callback.py").resolve()
    assert out[1] == "[]"
    events = read_events(lonely / "runs" / "copied")
    assert [e["kind"] for e in events] == ["start", "metrics", "end"]
    assert math.isnan(events[1]["values"]["loss"])


def test_unexpected_errors_warn_once_per_method_and_never_raise(
    tmp_path: Path, monitor_warnings: list[warnings.WarningMessage]
) -> None:
    import torch

    with RunWriter(tmp_path, name="x") as run:
        assert run.log(None, {"loss": 1.0}) is False  # type: ignore[arg-type]
        assert run.log("three", {"loss": 1.0}) is False  # type: ignore[arg-type]
        assert run.log(1, {"loss": torch.empty((), device="meta")}) is False
        assert run.checkpoint(None, "p") is False  # type: ignore[arg-type]
        assert run.log(2, {"loss": 1.0}) is True
    assert sorted(only_monitor(monitor_warnings)) == [
        "mudpuppy: cannot read metric values (NotImplementedError: Cannot copy out of meta "
        "tensor; no data!)",
        "mudpuppy: checkpoint failed (TypeError: int() argument must be a string, a bytes-like "
        "object or a real number, not 'NoneType'); nothing recorded",
        "mudpuppy: log failed (TypeError: int() argument must be a string, a bytes-like object or "
        "a real number, not 'NoneType'); nothing recorded",
    ]
    assert [e["kind"] for e in read_events(run.dir)] == ["start", "metrics", "end"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_exiting_does_not_end_the_parents_run(tmp_path: Path) -> None:
    code = f"""
        import os, sys
        sys.path.insert(0, {str(CALLBACK_FILE.parent)!r})
        from mudpuppy_callback import RunWriter
        run = RunWriter({str(tmp_path)!r}, name="parent")
        run.log(1, {{"loss": 1.0}})
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a child that exits through the interpreter: atexit handlers run
        os.waitpid(pid, 0)
        run.log(2, {{"loss": 0.5}})
        run.close()
    """
    proc = _run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    kinds = [(e["kind"], e.get("status")) for e in read_events(tmp_path / "parent")]
    assert kinds == [("start", None), ("metrics", None), ("metrics", None), ("end", "completed")]
