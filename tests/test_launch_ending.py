"""The launcher's side of a run directory: its meta, the `end` line a job did not write, and
where the output goes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from mudpuppy_callback import RunWriter, decode_line

from mudpuppy_monitor.launch.ending import (
    Outcome,
    append_end,
    end_fields,
    last_event,
    last_exception,
    write_meta,
)

TRACEBACK = """\
{'loss': 4.8}
Traceback (most recent call last):
  File "train.py", line 9, in <module>
    trainer.train()
  File "trainer.py", line 2, in train
    raise ValueError("first")
ValueError: first

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "train.py", line 11, in <module>
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
wandb: Synced 5 W&B files
"""


def test_the_last_traceback_gives_the_exception_line() -> None:
    assert (
        last_exception(TRACEBACK) == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert last_exception("all fine\n") is None
    old = TRACEBACK + "more output\n" * 100
    assert last_exception(old) is None  # too far up to be what ended the job


def test_torchrun_rank_prefixes_and_syntax_errors_are_read() -> None:
    ranked = (
        "[rank0]: Traceback (most recent call last):\n"
        '[rank0]:   File "t.py", line 3, in <module>\n'
        "[rank0]: KeyError: 'labels'\n"
    )
    assert last_exception(ranked) == "KeyError: 'labels'"
    syntax = (
        "Traceback (most recent call last):\n"
        '  File "t.py", line 1\n'
        "    print(\n"
        "         ^\n"
        "SyntaxError: '(' was never closed\n"
    )
    assert last_exception(syntax) == "SyntaxError: '(' was never closed"


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome(0), {"status": "completed", "exit_code": 0}),
        (Outcome(3), {"status": "failed", "exit_code": 3, "error": "exit code 3"}),
        (Outcome(1, signal.SIGINT), {"status": "interrupted", "exit_code": 1}),
        (Outcome(0, signal.SIGTERM), {"status": "interrupted", "exit_code": 0}),
        (
            Outcome(-signal.SIGKILL),
            {"status": "crashed", "signal": "SIGKILL", "error": "killed by SIGKILL"},
        ),
        (
            Outcome(-signal.SIGSEGV),
            {"status": "crashed", "signal": "SIGSEGV", "error": "killed by SIGSEGV"},
        ),
        (
            Outcome(-signal.SIGTERM),
            {"status": "interrupted", "signal": "SIGTERM", "error": "killed by SIGTERM"},
        ),
        (
            Outcome(-signal.SIGKILL, signal.SIGINT),  # stopped, then killed: the person's intent
            {"status": "interrupted", "signal": "SIGKILL", "error": "killed by SIGKILL"},
        ),
    ],
)
def test_end_status_from_the_way_the_command_ended(outcome: Outcome, expected: dict) -> None:
    assert end_fields(outcome, "") == expected


def test_a_failure_carries_the_traceback_line() -> None:
    assert end_fields(Outcome(1), TRACEBACK)["error"].startswith("RuntimeError: CUDA out of memory")


def test_append_end_continues_seq_and_step_after_a_torn_line(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "r")
    writer.log(7, {"loss": 1.0})
    assert writer.dir is not None
    run_dir = writer.dir
    writer._close_fd()  # the process died: no end, and a line cut short
    writer._closed = True
    with open(run_dir / "events.jsonl", "ab") as f:
        f.write(b'{"v":1,"seq":2,"t":1,"kind":"metr')
    end = append_end(run_dir, {"status": "crashed", "signal": "SIGKILL"}, now=5.0)
    lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    assert lines[-2] == b'{"v":1,"seq":2,"t":1,"kind":"metr'  # left alone, on its own line
    assert (
        decode_line(lines[-1])
        == end
        == {
            "v": 1,
            "seq": 2,
            "t": 5.0,
            "kind": "end",
            "status": "crashed",
            "signal": "SIGKILL",
            "step": 7,
        }
    )
    assert last_event(run_dir) == end


def test_launcher_meta_is_a_valid_run_identity(tmp_path: Path) -> None:
    write_meta(tmp_path, name="job", command=["python", "train.py"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["format"] == "mudpuppy-run/1"
    assert len(meta["run_id"]) == 32
    assert (meta["name"], meta["argv"], meta["config"], meta["gpus"]) == (
        "job",
        ["python", "train.py"],
        {},
        [],
    )
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
    assert last_event(tmp_path) is None


def test_output_follows_the_run_the_trainer_reported(tmp_path: Path) -> None:
    from mudpuppy_monitor.launch import hook
    from mudpuppy_monitor.launch.job import Job, LaunchSettings

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings = LaunchSettings(command=("python", "t.py"), root=tmp_path / "runs", name="job")
    job = Job(settings, scratch)
    assert job.run_dir == job.placeholder == tmp_path / "runs" / "job"
    job.log.write(b"loading the model\n")
    theirs = tmp_path / "theirs" / "mine"  # the Trainer's own MonitorCallback wrote here
    theirs.mkdir(parents=True)
    (theirs / "events.jsonl").write_text("")
    hook.report(str(job.handoff), theirs)
    job.follow_handoff()
    job.log.write(b"training\n")
    job.log.close()
    assert job.run_dir == theirs
    assert (theirs / "output.log").read_text() == "loading the model\ntraining\n"
    assert not (tmp_path / "runs" / "job").exists()  # the launcher's empty run is gone


def test_a_taken_name_keeps_the_output_aside_until_the_trainer_resumes_it(tmp_path: Path) -> None:
    from mudpuppy_monitor.launch import hook
    from mudpuppy_monitor.launch.job import Job, LaunchSettings

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    earlier = tmp_path / "runs" / "job"
    earlier.mkdir(parents=True)
    (earlier / "output.log").write_bytes(b"first attempt\n")
    job = Job(LaunchSettings(command=("x",), root=tmp_path / "runs", name="job"), scratch)
    assert (job.run_dir, job.placeholder) == (None, None)
    job.log.write(b"second attempt\n")
    assert (scratch / "output.log").read_bytes() == b"second attempt\n"
    hook.report(str(job.handoff), earlier)
    job.follow_handoff()
    job.log.close()
    assert (earlier / "output.log").read_bytes() == b"first attempt\nsecond attempt\n"
    assert not (scratch / "output.log").exists()
