"""`mudpuppy-monitor run -- CMD` with real Trainer jobs: a tiny peft LoRA fine-tune whose script
knows nothing of the monitor (tests/launch_train.py), run as a user runs it, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import decode_line

from tests.conftest import find_free_port

pytest.importorskip("transformers")
pytest.importorskip("peft")

SCRIPT = str(Path(__file__).with_name("launch_train.py"))
# each job imports torch and transformers: seconds on an idle machine, far more on a busy one
pytestmark = pytest.mark.timeout(900)


def launch(
    root: Path, *command: str, name: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "mudpuppy_monitor",
        "run",
        "--root",
        str(root),
        "--lora-every",
        "5",
    ]
    if name is not None:
        args += ["--name", name]
    return subprocess.run(
        [*args, "--", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        timeout=800,
    )


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def plain_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One job: `run -- python launch_train.py OUT`, 20 steps, eval every 5, save every 10."""
    base = tmp_path_factory.mktemp("plain")
    proc = launch(base / "runs", sys.executable, SCRIPT, str(base / "out"))
    run_dir = only_run(base / "runs")
    return {
        "proc": proc,
        "dir": run_dir,
        "meta": json.loads((run_dir / "meta.json").read_text()),
        "events": read_events(run_dir),
        "out": base / "out",
    }


def test_a_script_without_a_callback_gets_a_complete_run(plain_job: dict[str, Any]) -> None:
    proc, events = plain_job["proc"], plain_job["events"]
    assert proc.returncode == 0, proc.stderr
    kinds = {e["kind"] for e in events}
    assert kinds >= {"start", "metrics", "eval", "lora", "checkpoint", "end"}
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert [e["kind"] for e in events].count("start") == 1
    assert (events[-1]["kind"], events[-1]["status"], events[-1]["step"]) == (
        "end",
        "completed",
        20,
    )
    losses = [e["step"] for e in events if e["kind"] == "metrics" and "loss" in e["values"]]
    assert losses == list(range(1, 21))
    assert [e["step"] for e in events if e["kind"] == "eval"] == [5, 10, 15, 20]
    assert [e["step"] for e in events if e["kind"] == "lora"] == [5, 10, 15, 20]  # --lora-every 5
    assert [e["path"] for e in events if e["kind"] == "checkpoint"] == [
        str(plain_job["out"] / "checkpoint-10"),
        str(plain_job["out"] / "checkpoint-20"),
    ]


def test_the_run_is_named_after_the_script_and_carries_the_trainer_config(
    plain_job: dict[str, Any],
) -> None:
    meta = plain_job["meta"]
    assert plain_job["dir"].name.startswith("launch_train-")
    assert meta["name"] == plain_job["dir"].name
    assert (meta["config"]["method"], meta["config"]["r"], meta["world_size"]) == ("lora", 4, 1)
    assert meta["argv"][0] == SCRIPT


def test_output_log_holds_the_prints_and_the_terminal_got_them_unchanged(
    plain_job: dict[str, Any],
) -> None:
    log = (plain_job["dir"] / "output.log").read_text()
    lines = log.splitlines()
    assert lines[0] == "script starting"
    assert lines[-1] == "script done"
    assert log.endswith("\n")
    assert "{'loss': " in log  # the Trainer's own log lines
    proc = plain_job["proc"]
    assert proc.stdout.splitlines()[0] == "script starting"
    assert proc.stdout.splitlines()[-1] == "script done"
    assert "mudpuppy-monitor:" not in log  # the launcher's own notes stay out of the job's log
    assert f"{plain_job['dir']}: completed" in proc.stderr


def test_torchrun_with_two_workers_gives_one_run_written_by_rank_0(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    proc = launch(
        root,
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        SCRIPT, str(tmp_path / "out"),
        name="ddp",
        STEPS="6",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run(root)
    assert run_dir.name == "ddp"
    events = read_events(run_dir)
    assert [e["kind"] for e in events].count("start") == 1
    assert [e["step"] for e in events if e["kind"] == "metrics" and "loss" in e["values"]] == [
        1, 2, 3, 4, 5, 6
    ]  # fmt: skip
    assert (events[-1]["kind"], events[-1]["status"]) == ("end", "completed")
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["world_size"], meta["argv"][0]) == (2, SCRIPT)  # written by a worker
    # both workers' output is in the job's log
    assert (run_dir / "output.log").read_text().count("script starting") == 2


def test_an_exception_after_5_steps_fails_the_run_with_its_text(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    proc = launch(root, sys.executable, SCRIPT, str(tmp_path / "out"), RAISE_AT="5")
    assert proc.returncode == 1
    run_dir = only_run(root)
    end = read_events(run_dir)[-1]
    assert (end["kind"], end["status"]) == ("end", "failed")
    assert end["error"] == "RuntimeError: boom at step 5"
    assert "RuntimeError: boom at step 5" in (run_dir / "output.log").read_text()


def test_a_killed_job_resumed_from_its_checkpoint_continues_one_run(tmp_path: Path) -> None:
    """20 steps saving every 10, killed at 15, resumed from checkpoint-10 in a new process with
    the dashboard alongside: one run directory, and the API's loss series has each step once."""
    root, out = tmp_path / "runs", tmp_path / "out"
    first = launch(root, sys.executable, SCRIPT, str(out), name="job", KILL_AT="15")
    assert first.returncode == 128 + 9  # SIGKILL, passed on
    end = read_events(root / "job")[-1]
    assert (end["kind"], end["status"], end["signal"]) == ("end", "crashed", "SIGKILL")
    assert end["step"] == 14  # killed before step 15 was logged
    port = find_free_port()
    second = subprocess.Popen(
        [sys.executable, "-m", "mudpuppy_monitor", "run", "--root", str(root), "--name", "job",
         "--lora-every", "5", "--serve", "--port", str(port),
         "--", sys.executable, SCRIPT, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1", "RESUME_FROM": str(out / "checkpoint-10")},
    )  # fmt: skip
    said = ""
    try:
        said = _read_until(second, "still serving")
        api = f"http://127.0.0.1:{port}/api/runs/job"
        summary = _get(api, lambda d: d["summary"]["status"] == "completed")["summary"]
        assert (summary["step"], summary["error"]) == (20, None)
        loss = _get(f"{api}/series?names=loss")["series"]["loss"]
        assert loss["x"] == list(range(1, 21))  # steps 11-14 of the killed attempt superseded
        restarts = [m for m in _get(api)["markers"] if m["kind"] == "restart"]
        assert [m["step"] for m in restarts] == [10]
        log = _get(f"{api}/log?tail=1000")["lines"]
        assert log.count("script starting") == 2 and log[-1] == "script done"
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(120) == 0, said[-3000:]
    assert [p.name for p in root.iterdir()] == ["job"]  # not job-2
    events = read_events(root / "job")
    assert [e["seq"] for e in events] == list(range(len(events)))
    starts = [e for e in events if e["kind"] == "start"]
    assert [s.get("resumed_from") for s in starts] == [None, 10]
    assert starts[0]["run_id"] == starts[1]["run_id"]
    ends = [(e["status"], e["step"]) for e in events if e["kind"] == "end"]
    assert ends == [("crashed", 14), ("completed", 20)]
    # the dead attempt's steps 11-14 stay in the file; readers hide them
    logged = [e["step"] for e in events if e["kind"] == "metrics" and "loss" in e["values"]]
    assert logged == [*range(1, 15), *range(11, 21)]
    # both attempts' output, in order, in the one run's log
    log_text = (root / "job" / "output.log").read_text()
    assert log_text.count("script starting") == 2
    assert log_text.rstrip().endswith("script done")


def _read_until(proc: subprocess.Popen[bytes], text: str) -> str:
    seen = b""
    assert proc.stderr is not None
    while text.encode() not in seen:
        line = proc.stderr.readline()
        assert line, f"run ended before saying {text!r}: {seen.decode(errors='replace')[-3000:]}"
        seen += line
    return seen.decode(errors="replace")


def _get(url: str, until: Any = None, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        if until is None or until(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)
