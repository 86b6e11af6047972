"""`mudpuppy-monitor tui` as a user runs it: a subprocess with piped output, errors, and tmux."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mudpuppy_monitor.gpu.fake import fake_uuid
from tests.conftest import copy_fixture_runs
from tests.test_tui_app import write_native_run
from tests.test_tui_render import table_cells

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_fixture_runs(tmp_path / "runs")


def _tui(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "mudpuppy_monitor", "tui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def test_once_piped_prints_plain_text_and_exits_0(root):
    write_native_run(root, "live", time.time() - 4)
    proc = _tui(str(root), "--once", "--gpu", "none")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out
    lines = out.splitlines()
    # the LLaMA-Factory log was just copied, so its fresh mtime reads as a running job
    assert lines[0].startswith("3 runs: 2 running, 1 completed  GPU: off  /")
    assert max(len(line) for line in lines) <= 80
    _, rows = table_cells(out)
    assert set(rows) == {"live", "hf-run", "lf-run"}
    assert rows["live"]["step"] == "40/100"
    assert rows["live"]["loss"] == "NaN"
    assert rows["hf-run"]["step"] == "120/120"
    assert rows["lf-run"]["step"] == "3240/6750"


def test_once_uses_the_columns_it_is_given(root):
    proc = _tui(str(root), "--once", "--gpu", "none", columns=200)
    assert proc.returncode == 0, proc.stderr
    headers, rows = table_cells(proc.stdout)
    assert "source" in headers and "grad norm" in headers
    assert rows["hf-run"]["grad norm"] == "7.04"
    assert rows["lf-run"]["source"] == "llamafactory"


def test_once_with_the_fake_gpu_shows_simulated_devices(root):
    # the run's meta names simulated device 0 by UUID, as a real trainer names its CUDA devices
    write_native_run(root, "live", time.time() - 4, gpus=[fake_uuid(0, 0)])
    proc = _tui(str(root), "--once", "--gpu", "fake", columns=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  GPU: fake (simulated)  " in lines[0]
    gpu_lines = [line for line in lines if re.match(r"GPU\d+ ", line)]
    assert gpu_lines, proc.stdout
    assert all(re.search(r"util +\d+%  VRAM [\d.]+GiB/[\d.]+GiB", g) for g in gpu_lines)
    assert gpu_lines[0].startswith("GPU0 Simulated GPU 80GB (fake)  util ")
    # the fake device's own synthetic job belongs to no run: counted as another user
    assert gpu_lines[0].endswith("runs: live +1 other process")


def test_once_filter_selects_runs(root):
    proc = _tui(str(root), "--once", "--gpu", "none", "--filter", "^hf")
    assert proc.returncode == 0, proc.stderr
    _, rows = table_cells(proc.stdout)
    assert list(rows) == ["hf-run"]
    assert "1 of 2 runs match /^hf/" in proc.stdout.splitlines()[0]


def test_missing_root_is_one_line_and_exit_2(tmp_path):
    proc = _tui(str(tmp_path / "nope"), "--once")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"mudpuppy-monitor: root not found: {tmp_path / 'nope'}\n"


def test_bad_regex_is_one_line_and_exit_2(root):
    proc = _tui(str(root), "--once", "--filter", "(unclosed")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("mudpuppy-monitor: bad --filter regex '(unclosed': ")


def test_non_positive_refresh_is_refused(root):
    proc = _tui(str(root), "--refresh", "0")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1


def test_a_file_as_root_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = _tui(str(f), "--once")
    assert proc.returncode == 2
    assert proc.stderr == f"mudpuppy-monitor: root is not a directory: {f}\n"


# -- one real terminal --------------------------------------------------------------------------


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_tmux_draws_the_table_and_stopping_restores_the_terminal(root, tmp_path, stop):
    write_native_run(root, "live", time.time() - 2)
    # a private server socket: nothing of the user's tmux is touched
    tmux = ["tmux", "-L", f"mudpuppy-test-{os.getpid()}", "-f", os.devnull]
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)

    def t(*args: str) -> str:
        return subprocess.run(
            [*tmux, *args], capture_output=True, text=True, env=env, timeout=10, check=True
        ).stdout

    tui = shlex.join(
        [sys.executable, "-m", "mudpuppy_monitor", "tui", str(root), "--gpu", "fake"]
        + ["--refresh", "0.2"]
    )
    # bash waits for a child that handles Ctrl-C itself, then records how it ended
    exit_file = tmp_path / "exit-code"
    cmd = shlex.join(["bash", "-c", f"{tui}; echo $? > {shlex.quote(str(exit_file))}"])
    t("new-session", "-d", "-s", "tui", "-x", "120", "-y", "30", "-c", str(REPO), "sleep 60")
    try:
        t("set-option", "-t", "tui", "remain-on-exit", "on")
        t("respawn-pane", "-k", "-t", "tui", "-c", str(REPO), cmd)
        assert _wait_for(lambda: "3240/6750" in t("capture-pane", "-p", "-t", "tui")), t(
            "capture-pane", "-p", "-t", "tui"
        )
        screen = t("capture-pane", "-p", "-t", "tui")
        _, rows = table_cells(screen)
        assert rows["live"]["step"] == "40/100"
        assert rows["hf-run"]["step"] == "120/120"
        assert "  GPU: fake (simulated)  " in screen.splitlines()[0]
        if stop == "ctrl-c":
            t("send-keys", "-t", "tui", "C-c")
        else:
            # `timeout` or `kill`: the view is bash's child in the pane
            shell = psutil.Process(int(t("display", "-p", "-t", "tui", "#{pane_pid}")))
            (view,) = shell.children()
            view.send_signal(signal.SIGTERM)
        assert _wait_for(lambda: exit_file.exists() and exit_file.read_text() != "")
        assert exit_file.read_text() == "0\n"
        # the alternate screen is gone: the shell's screen is back, without the table
        after = t("capture-pane", "-p", "-t", "tui")
        assert "3240/6750" not in after
        assert "Traceback" not in after
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, env=env, timeout=10)
