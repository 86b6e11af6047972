"""`mudpuppy-monitor serve` as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import find_free_port
from tests.serverutil import REPO, RunDir, ServeProcess


def run_serve(*args: str, timeout: float = 30, env: dict | None = None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "mudpuppy_monitor", "serve", *args]
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
    )


def test_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_serve(str(tmp_path), "--port", str(port), "--gpu", "none")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mudpuppy-monitor: port {port} on 127.0.0.1 is already in use; choose another with --port"
    ]


def test_root_that_is_a_file_is_exit_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    done = run_serve(str(f), "--port", str(find_free_port()))
    assert done.returncode == 2
    assert done.stderr.strip() == f"mudpuppy-monitor: {f} is not a directory"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_unreadable_root_is_exit_2(tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0)
    tmp_path.chmod(0o755)
    # root reads everything: run as nobody so permissions apply
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import mudpuppy_monitor.cli"], cwd=REPO,
                           capture_output=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("the interpreter is not usable by an unprivileged user here")
    done = run_serve(str(root), "--port", str(find_free_port()), prefix=prefix)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"mudpuppy-monitor: cannot read {root}: permission denied"


def test_bad_arguments_are_exit_2(tmp_path):
    assert run_serve(str(tmp_path), "--port", "70000").returncode == 2
    assert run_serve(str(tmp_path), "--gpu", "tpu").returncode == 2
    assert run_serve(str(tmp_path), "--gpu-interval", "0").returncode == 2


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "fast"])
def test_a_peak_that_is_not_a_positive_number_is_one_line_and_exit_2(tmp_path, value):
    done = run_serve(str(tmp_path), "--peak-tflops", value, "--gpu", "none")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 or "invalid float value" in done.stderr, done.stderr
    assert "--peak-tflops" in done.stderr


def test_a_given_peak_reaches_mfu(tmp_path):
    run = RunDir(tmp_path, "a", meta={"gpus": [], "config": {"precision": "bf16"}})
    run.metrics(1, loss=1.0)
    with ServeProcess(tmp_path, "--gpu", "fake", "--peak-tflops", "312.5") as server:
        eff = server.get_json("/api/runs/a")["efficiency"]
    assert eff["peak_tflops_override"] == 312.5


def test_prints_the_url_and_serves_until_interrupted(tmp_path):
    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    server = ServeProcess(tmp_path, "--gpu", "fake")
    with server:
        assert f"serving {tmp_path} at http://127.0.0.1:{server.port}/\n" in server.output
        assert [r["id"] for r in server.get_json("/api/runs")["runs"]] == ["a"]
        assert server.get_json("/api/gpus")["simulated"] is True
        proc = server.proc
    assert proc.returncode == 130, server.output  # Ctrl-C, as a shell reports it


def test_token_is_printed_in_the_url_and_required(tmp_path):
    server = ServeProcess(tmp_path, "--token", "tok123", "--gpu", "none")
    with server:
        assert f"http://127.0.0.1:{server.port}/?token=tok123" in server.output
        assert server.get("/api/runs", headers={"Authorization": "Bearer nope"})[0] == 401
        assert server.get("/api/runs")[0] == 200  # auth_headers() carries the token


def test_a_missing_root_is_waited_for(tmp_path):
    root = tmp_path / "later"
    with ServeProcess(root, "--gpu", "none") as server:
        assert "does not exist yet; waiting for it" in server.output
        assert server.get_json("/api/runs")["runs"] == []
        RunDir(root, "late").metrics(1, loss=1.0)
        deadline = time.monotonic() + 15
        while not server.get_json("/api/runs")["runs"]:
            assert time.monotonic() < deadline, "the run in the new root never appeared"
            time.sleep(0.1)
        assert server.get_json("/api/runs")["runs"][0]["id"] == "late"


def test_open_starts_the_browser_on_the_url(tmp_path):
    seen = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(browser), "DISPLAY": ""}
    root = tmp_path / "runs"
    root.mkdir()
    with ServeProcess(root, "--open", "--gpu", "none", env=env) as server:
        deadline = time.monotonic() + 10
        while not seen.exists() or not seen.read_text().strip():
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        assert seen.read_text().strip() == f"http://127.0.0.1:{server.port}/"
