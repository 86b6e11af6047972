"""`mudpuppy-monitor run -- CMD` as a process: exit status, signals, names, the startup hook.

Real processes throughout (small Python scripts, no Trainer: tests/test_launch_trainer.py has
those); the launcher runs as users run it, `python -m mudpuppy_monitor run ...`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import decode_line

from mudpuppy_monitor.launch.cli import default_name, script_stem

RUN = [sys.executable, "-m", "mudpuppy_monitor", "run"]


def script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def run_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def start(root: Path, *command: str, name: str = "job", **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RUN, "--root", str(root), "--name", name, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie has exited too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_os_exit_3_without_an_end_line_fails_the_run_with_code_3(tmp_path: Path) -> None:
    job = script(tmp_path, "import os; print('working', flush=True); os._exit(3)")
    proc = subprocess.run([*RUN, "--root", str(tmp_path / "runs"), "--", sys.executable, str(job)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 3
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("job-")  # the script's name and the time
    assert [(e["kind"], e["status"], e["exit_code"], e["error"]) for e in events(run)] == [
        ("end", "failed", 3, "exit code 3")
    ]
    meta = json.loads((run / "meta.json").read_text())
    assert (meta["name"], meta["argv"]) == (run.name, [sys.executable, str(job)])
    assert (run / "output.log").read_text() == "working\n"
    assert proc.stdout == "working\n"
    assert f"{run}: failed: exit code 3" in proc.stderr


def test_a_traceback_at_the_end_of_the_output_is_the_error(tmp_path: Path) -> None:
    job = script(tmp_path, "raise ValueError('bad config: lr')")
    proc = subprocess.run([*RUN, "--root", str(tmp_path), "--name", "r", "--", sys.executable, str(job)],
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 1
    (end,) = events(tmp_path / "r")
    assert (end["status"], end["error"], end["exit_code"]) == (
        "failed",
        "ValueError: bad config: lr",
        1,
    )


def test_a_job_without_a_trainer_that_exits_0_is_completed(tmp_path: Path) -> None:
    job = script(tmp_path, "print('done')")
    proc = subprocess.run([*RUN, "--root", str(tmp_path), "--name", "r", "--", sys.executable, str(job)],
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 0
    assert [(e["status"], e["exit_code"]) for e in events(tmp_path / "r")] == [("completed", 0)]


def test_sigkill_of_the_command_crashes_the_run(tmp_path: Path) -> None:
    job = script(tmp_path, "import os, time; print(os.getpid(), flush=True); time.sleep(60)")
    proc = start(tmp_path / "runs", sys.executable, str(job))
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    os.kill(child, signal.SIGKILL)
    assert proc.wait(30) == 128 + 9
    (end,) = events(tmp_path / "runs" / "job")
    assert (end["status"], end["signal"], end["error"]) == (
        "crashed",
        "SIGKILL",
        "killed by SIGKILL",
    )


COUNT_SIGINTS = """
    import os, signal, sys, time
    got = []
    signal.signal(signal.SIGINT, lambda *a: got.append(1))
    print(os.getpid(), flush=True)
    while not got:
        time.sleep(0.01)
    time.sleep(1.0)  # a second delivery would arrive meanwhile
    print(f"SIGINTs: {len(got)}", flush=True)
    sys.exit(5)
"""


def test_sigint_to_the_launcher_reaches_the_job_once_and_the_run_is_interrupted(
    tmp_path: Path,
) -> None:
    job = script(tmp_path, COUNT_SIGINTS)
    proc = start(tmp_path / "runs", sys.executable, str(job))
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)  # `kill -INT`: the launcher alone gets it and passes it on
    out, _ = proc.communicate(timeout=30)
    assert out.decode().strip() == "SIGINTs: 1"
    assert proc.returncode == 5  # the command's exit code
    (end,) = events(tmp_path / "runs" / "job")
    assert (end["status"], end["exit_code"]) == ("interrupted", 5)


def test_a_command_dying_of_sigint_makes_the_launcher_die_of_it(tmp_path: Path) -> None:
    job = script(tmp_path, "import os, time; print(os.getpid(), flush=True); time.sleep(60)")
    proc = start(tmp_path / "runs", sys.executable, str(job))
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == -signal.SIGINT  # as the command did: a shell loop around it stops
    (end,) = events(tmp_path / "runs" / "job")
    assert (end["status"], end["signal"]) == ("interrupted", "SIGINT")


def test_ctrl_c_in_the_terminal_reaches_the_job_once(tmp_path: Path) -> None:
    job = script(tmp_path, COUNT_SIGINTS)
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [*RUN, "--root", str(tmp_path / "runs"), "--name", "job", "--", sys.executable, str(job)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    seen = b""
    try:
        while not re.search(rb"^\d+\r?$", seen, re.M):
            seen += os.read(master, 4096)  # the job is ready when its pid is out
        os.write(master, b"\x03")  # Ctrl-C: the terminal signals the whole foreground group
        assert proc.wait(30) == 5
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert b"SIGINTs: 1" in seen
    (end,) = events(tmp_path / "runs" / "job")
    assert (end["status"], end["exit_code"]) == ("interrupted", 5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_sigkilled_launcher_takes_the_command_along(tmp_path: Path) -> None:
    job = script(
        tmp_path,
        """
        import os, signal, sys, time
        def stop(*a):
            open(sys.argv[1], "w").write("terminated")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print(os.getpid(), flush=True)
        time.sleep(60)
        """,
    )
    marker = tmp_path / "marker"
    proc = start(tmp_path / "runs", sys.executable, str(job), str(marker))
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait(10)
    wait_for(lambda: pid_gone(child))
    assert marker.read_text() == "terminated"  # the parent-death signal is SIGTERM


def test_a_left_behind_child_holding_the_output_does_not_hold_the_launcher(tmp_path: Path) -> None:
    job = script(
        tmp_path,
        """
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(p.pid, flush=True)
        """,
    )
    began = time.monotonic()
    proc = subprocess.run([*RUN, "--root", str(tmp_path), "--name", "r", "--", sys.executable, str(job)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    left_behind = int(proc.stdout.split()[0])
    try:
        assert proc.returncode == 0
        assert time.monotonic() - began < 30
        assert [e["status"] for e in events(tmp_path / "r")] == ["completed"]
    finally:
        os.kill(left_behind, signal.SIGKILL)


def test_the_hook_chains_to_an_existing_sitecustomize_and_leaves_sys_path_alone(
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text(  # the launcher itself runs it too: say it in the job
        "import os\nif 'MUDPUPPY_LAUNCH_ROOT' in os.environ: print('their sitecustomize ran', flush=True)\n"
    )
    job = script(
        tmp_path,
        """
        import json, os, sys
        print(json.dumps({
            "boot_on_path": any(p.endswith(os.path.join("launch", "boot")) for p in sys.path),
            "theirs_on_path": any(p.endswith("theirs") for p in sys.path),
            "finders": [type(f).__name__ for f in sys.meta_path],
            "trainer_imported": "transformers" in sys.modules,
        }), flush=True)
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(theirs)}
    proc = subprocess.run([*RUN, "--root", str(tmp_path), "--name", "r", "--", sys.executable, str(job)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "their sitecustomize ran"
    seen = json.loads(second)
    assert seen == {
        "boot_on_path": False,
        "theirs_on_path": True,
        "finders": ["PostImportFinder", *seen["finders"][1:]],
        "trainer_imported": False,  # nothing heavy at start-up
    }
    assert (tmp_path / "r" / "output.log").read_text().splitlines() == [first, second]


def test_a_taken_name_without_a_trainer_gets_a_new_run(tmp_path: Path) -> None:
    job = script(tmp_path, "print('second')")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "events.jsonl").write_text("")
    proc = subprocess.run([*RUN, "--root", str(tmp_path), "--name", "r", "--", sys.executable, str(job)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0
    assert (tmp_path / "r-2" / "output.log").read_text() == "second\n"
    assert [e["status"] for e in events(tmp_path / "r-2")] == ["completed"]
    assert json.loads((tmp_path / "r-2" / "meta.json").read_text())["name"] == "r-2"
    assert not (tmp_path / "r" / "output.log").exists()


def test_an_unknown_command_is_127_and_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.run([*RUN, "--root", str(tmp_path / "runs"), "--", "no-such-command-x"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 127
    assert proc.stderr == "mudpuppy-monitor: command not found: no-such-command-x\n"
    assert run_dirs(tmp_path / "runs") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to run: give the command after --"),
        (["--"], "nothing to run: give the command after --"),
        (["--name", "../x", "--", "true"], "invalid run name '../x'"),
        (["--lora-every", "-1", "--", "true"], "--lora-every must be 0 (off) or a positive"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = subprocess.run([*RUN, "--root", str(tmp_path), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"mudpuppy-monitor: {message}")
    assert proc.stderr.count("\n") == 1


def test_default_names_come_from_the_script() -> None:
    assert script_stem(["python", "train.py", "--cfg", "x.py"]) == "train"
    assert script_stem(["accelerate", "launch", "--num_processes", "2", "sft.py"]) == "sft"
    assert script_stem(["python", "-m", "torch.distributed.run", "fit.py"]) == "fit"
    assert script_stem(["python", "-m", "pkg.finetune", "--lr", "1"]) == "finetune"
    assert script_stem(["./run.sh"]) == "run"
    assert script_stem(["/usr/bin/axolotl", "cfg.yml"]) == "axolotl"
    now = time.mktime((2025, 3, 4, 5, 6, 7, 0, 0, -1))
    assert default_name(["python", "my train!.py"], now) == "my-train-20250304-050607"
