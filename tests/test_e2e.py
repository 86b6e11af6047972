"""End to end, as a user meets the product: real trainers in subprocesses, a real server.

attach (server started after training began), crash (SIGKILL), restart (server restarted during
training) and the zero-code sources (an HF output_dir and a LLaMA-Factory log being appended to).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mudpuppy_callback import EVENTS_FILE, decode_line

from tests.serverutil import LiveServer, ProtocolClient, ServeProcess

pytest.importorskip("transformers")
pytest.importorskip("peft")

TRAIN_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def start_trainer(root: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mudpuppy_monitor.tinytrain",
            "--root",
            str(root),
            "--name",
            name,
            *args,
        ],
        env=TRAIN_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / EVENTS_FILE
    if not path.exists():
        return []
    return [
        decode_line(line)
        for line in path.read_bytes().splitlines(keepends=True)
        if line.endswith(b"\n")
    ]


def file_series(run_dir: Path, name: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for e in events(run_dir):
        if e["kind"] == "metrics" and name in e["values"]:
            steps.append(e["step"])
            values.append(e["values"][name])
    return steps, values


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None and proc.returncode != 0:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(
                f"trainer exited with {proc.returncode} while waiting for {what}: {err[-2000:]}"
            )
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def metrics_count(run_dir: Path) -> int:
    return sum(1 for e in events(run_dir) if e["kind"] == "metrics")


def status_of(server: Any, run: str) -> str | None:
    """The run's status, or None while the daemon has not discovered it yet (404)."""
    code, _, body = server.get(f"/api/runs/{quote(run)}")
    return json.loads(body)["summary"]["status"] if code == 200 else None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_attach_to_a_running_job_gets_the_whole_history_then_live_points(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer = start_trainer(root, "attach", "--steps", "60", "--step-delay", "0.15")
    try:
        run_dir = root / "attach"
        wait_for(
            lambda: metrics_count(run_dir) >= 10,
            90,
            "10 logged steps before the server starts",
            trainer,
        )
        with ServeProcess(root, "--gpu", "none") as server:
            client = ProtocolClient(server)
            snapshot = client.connect()
            assert "attach" in [r["id"] for r in snapshot["runs"]]
            client.fetch("attach")
            first = len(client.held["attach"]["loss"]["step"])
            assert first >= 10
            # live: points written after the attach arrive over the WebSocket
            client.pump(
                lambda m: len(client.held["attach"]["loss"]["step"]) >= first + 5, timeout=60
            )
            assert trainer.wait(120) == 0
            client.pump(lambda m: client.summaries["attach"]["status"] == "completed", timeout=30)
            steps, values = file_series(run_dir, "loss")
            client.pump_until_held("attach", "loss", steps, timeout=15)
            assert client.held["attach"]["loss"]["y"] == values
            assert steps == list(range(1, 61))
            # the HTTP answer equals the file, too
            doc = server.get_json("/api/runs/attach/series?names=loss&points=100000")
            assert doc["series"]["loss"]["x"] == steps
            assert doc["series"]["loss"]["y"] == values
            client.close()
    finally:
        stop(trainer)


def test_killed_trainer_turns_crashed_within_15_seconds(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer = start_trainer(root, "victim", "--steps", "5000", "--step-delay", "0.05")
    try:
        with LiveServer(root, gpu="none") as server:
            wait_for(lambda: metrics_count(root / "victim") >= 3, 90, "the trainer to log", trainer)
            wait_for(
                lambda: status_of(server, "victim") == "running",
                15,
                "the run to show as running",
            )
            trainer.send_signal(signal.SIGKILL)
            trainer.wait(10)
            killed = time.monotonic()
            wait_for(
                lambda: status_of(server, "victim") == "crashed",
                15,
                "status crashed",
            )
            assert time.monotonic() - killed < 15
            last = [e for e in events(root / "victim") if e["kind"] != "progress"][-1]
            assert last["kind"] != "end"  # nothing was written at death: the daemon inferred it
    finally:
        stop(trainer)


def test_server_restart_during_training_keeps_the_clients_picture_whole(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer = start_trainer(root, "steady", "--steps", "80", "--step-delay", "0.1")
    try:
        run_dir = root / "steady"
        wait_for(lambda: metrics_count(run_dir) >= 5, 90, "the trainer to log", trainer)
        with LiveServer(root, gpu="none") as server:
            client = ProtocolClient(server)
            client.connect()
            client.fetch("steady")
            n0 = len(client.held["steady"]["loss"]["step"])
            client.pump(lambda m: len(client.held["steady"]["loss"]["step"]) > n0 + 3, timeout=60)
            client.close()
            server.stop()
            time.sleep(1.0)  # the trainer keeps writing while the daemon is down
            server.start()
            client.connect()  # reconnect: the held points stay, the stream continues by the i0 rule
            assert trainer.wait(120) == 0
            steps, values = file_series(run_dir, "loss")
            client.pump_until_held("steady", "loss", steps, timeout=20)
            held = client.held["steady"]["loss"]
            assert held["step"] == steps  # no gap, no duplicate
            assert held["y"] == values
            fresh = server.get_json("/api/runs/steady/series?names=loss&points=100000")["series"][
                "loss"
            ]
            assert (held["step"], held["y"]) == (fresh["x"], fresh["y"])
            client.close()
    finally:
        stop(trainer)


HF_NO_CALLBACK = textwrap.dedent(
    """
    import sys
    from mudpuppy_callback import MonitorCallback
    from mudpuppy_monitor.tinytrain import build_tiny_trainer

    out = sys.argv[1]
    trainer = build_tiny_trainer(out + "-unused", "x", steps=30, save_every=10, eval_every=10,
                                 output_dir=out, step_delay_s=0.1)
    trainer.remove_callback(MonitorCallback)   # a job that never heard of mudpuppy
    trainer.train()
    """
)


def test_hf_output_dir_without_callback_is_followed_through_its_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    out = root / "hf-job"
    trainer = subprocess.Popen(
        [sys.executable, "-c", HF_NO_CALLBACK, str(out)],
        env=TRAIN_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with LiveServer(root, gpu="none") as server:
            first = wait_for(
                lambda: next(
                    (r for r in server.get_json("/api/runs")["runs"] if r["id"] == "hf-job"), None
                ),
                120,
                "the first checkpoint to be discovered",
                trainer,
            )
            assert first["source"] == "hf-trainer-state"
            assert trainer.wait(120) == 0
            final = wait_for(
                lambda: (s := server.get_json("/api/runs/hf-job")["summary"])["step"] == 30 and s,
                15,
                "the last checkpoint to be read",
            )
            assert final["max_steps"] == 30
            state = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())
            train = [row for row in state["log_history"] if "loss" in row]
            evals = [row for row in state["log_history"] if "eval_loss" in row]
            doc = server.get_json("/api/runs/hf-job/series?names=loss,eval_loss&points=100000")[
                "series"
            ]
            assert doc["loss"]["x"] == [row["step"] for row in train]
            assert doc["loss"]["y"] == [row["loss"] for row in train]
            assert doc["eval_loss"]["y"] == [row["eval_loss"] for row in evals]
    finally:
        stop(trainer)


def test_llamafactory_log_is_tailed_live_including_a_line_split_across_writes(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    lines = (
        (fixtures_dir / "llamafactory" / "qwen_medical_lr_with_eval.jsonl")
        .read_bytes()
        .splitlines(keepends=True)
    )
    root = tmp_path / "runs"
    log = root / "lf" / "trainer_log.jsonl"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"".join(lines[:50]))
    with LiveServer(root, gpu="none") as server:
        client = ProtocolClient(server)
        client.connect()
        assert client.summaries["lf"]["source"] == "llamafactory"
        client.fetch("lf")
        with log.open("ab") as f:
            for i, line in enumerate(lines[50:120]):
                if i == 10:  # a line caught mid-write: half now, the rest later
                    f.write(line[:40])
                    f.flush()
                    time.sleep(0.3)
                    f.write(line[40:])
                else:
                    f.write(line)
                f.flush()
        rows = [json.loads(x) for x in lines[:120]]
        steps = [r["current_steps"] for r in rows if "loss" in r]
        client.pump_until_held("lf", "loss", steps, timeout=15)
        assert client.held["lf"]["loss"]["y"] == [r["loss"] for r in rows if "loss" in r]
        summary = server.get_json(f"/api/runs/{quote('lf')}")["summary"]
        assert summary["source"] == "llamafactory"
        assert summary["step"] == rows[-1]["current_steps"]
        assert summary["max_steps"] == 6750
        assert server.get_json("/api/runs/lf")["bad_lines"] == 0
        client.close()
