"""`run --serve` and `run --tui` with real jobs (small scripts, no Trainer), and what the launcher
imports before the job's command starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

from mudpuppy_monitor.launch import hook, start
from tests.conftest import find_free_port

RUN = [sys.executable, "-m", "mudpuppy_monitor", "run"]
JOB = "import sys\nprint('hello from the job')\nprint('\\x1b[31mto stderr\\x1b[0m', file=sys.stderr)\n"


class Reader(threading.Thread):
    """Collects a pipe's text while the process runs."""

    def __init__(self, pipe) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.pipe = pipe
        self.text = ""
        self.start()

    def run(self) -> None:
        for line in iter(self.pipe.readline, b""):
            self.text += line.decode("utf-8", "replace")

    def wait_for(self, part: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while part not in self.text:
            assert time.monotonic() < deadline, f"{part!r} not seen in: {self.text!r}"
            time.sleep(0.05)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_hooks_settings_have_one_spelling() -> None:
    names = [n for n in dir(start) if n.startswith("ENV_")]
    assert len(names) == 7
    assert {n: getattr(start, n) for n in names} == {n: getattr(hook, n) for n in names}


def test_nothing_heavy_is_imported_before_the_command_starts(tmp_path: Path) -> None:
    """What `mudpuppy-monitor run -- CMD` has imported at the moment it forks the command."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from mudpuppy_monitor.launch import spawn as sp

        def probe(command, env, out_fd, err_fd, setup):
            print(" ".join(sorted(sys.modules)), flush=True)
            os._exit(0)

        sp.spawn = probe
        from mudpuppy_monitor.cli import main
        main(["run", "--root", {str(tmp_path / "runs")!r}, "--name", "x", "--", "true"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(out.stdout.split())
    assert "mudpuppy_monitor.launch.start" in loaded and "ctypes" in loaded
    heavy = {
        "argparse", "subprocess", "threading", "json", "socket", "pathlib", "tempfile",
        "shutil", "typing", "re", "enum", "selectors", "mudpuppy_callback",
        "mudpuppy_monitor.launch.job", "mudpuppy_monitor.launch.output",
    }  # fmt: skip
    assert heavy & loaded == set()


def test_serve_alongside_shows_the_job_and_keeps_serving_until_ctrl_c(tmp_path: Path) -> None:
    port = find_free_port()
    job = tmp_path / "job.py"
    job.write_text(JOB + "raise SystemExit(3)\n")
    proc = subprocess.Popen(
        [*RUN, "--root", str(tmp_path / "runs"), "--name", "job", "--serve", "--port", str(port),
         "--", sys.executable, str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    try:
        err.wait_for("still serving")
        assert f"still serving http://127.0.0.1:{port}/ (Ctrl-C to stop)" in err.text
        base = f"http://127.0.0.1:{port}/api/runs"
        deadline = time.monotonic() + 30
        while True:  # the daemon reads the end line within its scan interval
            runs = get_json(base)["runs"]
            if runs and runs[0]["status"] == "failed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(r["id"], r["status"], r["error"]) for r in runs] == [
            ("job", "failed", "exit code 3")
        ]
        lines = get_json(f"{base}/job/log?tail=10")["lines"]
        assert lines == ["hello from the job", "\x1b[31mto stderr\x1b[0m"]
        assert "hello from the job" in out.text  # the terminal got the output too
        assert proc.poll() is None  # the job is over; the daemon is still up
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 3  # the job's exit code, not the daemon's
    refused = False
    try:
        get_json(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        refused = True
    assert refused  # the daemon went with it


def test_tui_alongside_takes_the_terminal_and_leaves_the_final_state(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    proc = subprocess.run(
        [*RUN, "--root", str(tmp_path / "runs"), "--name", "job", "--tui",
         "--", sys.executable, str(job)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120", "LINES": "40"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # no terminal here: the view prints its last frame once, the job's output only inside it
    assert proc.stdout.count("hello from the job") == 1
    frame = proc.stdout.splitlines()
    at = frame.index("output of job")
    assert frame[at + 1 :][:2] == ["hello from the job", "to stderr"]
    assert any(line.startswith("completed") and " job " in f" {line} " for line in frame)
    assert "\x1b" not in proc.stdout
    # said again below the final frame (the first time, the view had the screen)
    assert proc.stderr.rstrip().endswith(f"{tmp_path / 'runs' / 'job'}: completed")
    log = (tmp_path / "runs" / "job" / "output.log").read_text()
    assert log == "hello from the job\n\x1b[31mto stderr\x1b[0m\n"
