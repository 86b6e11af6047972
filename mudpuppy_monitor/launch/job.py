"""Run one command as a monitored job and end its run: `run_job(settings) -> exit code`.

1. The run directory: `<root>/<name>` is created now when the name is free (the job's first
   Trainer records into it). When the name is taken, the choice waits for the job's Trainer: one
   resumed from a checkpoint continues that run, any other gets `<name>-2`, ... as the writer
   does; the output waits in a temporary file meanwhile.
2. The command runs with the startup hook on its PYTHONPATH (see hook.py), in the launcher's
   process group, with a parent-death signal (SIGTERM) so that it never outlives the launcher.
3. Its stdout and stderr go to the terminal unchanged and into the run's `output.log`.
4. When it exits, the run gets an `end` line unless the job wrote one, and the launcher exits with
   the command's exit status (dying of the same stop signal when the command did).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import mudpuppy_callback

from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.launch import hook
from mudpuppy_monitor.launch.ending import (
    Outcome,
    append_end,
    end_fields,
    last_event,
    read_output_tail,
    write_meta,
)
from mudpuppy_monitor.launch.lifetime import die_with_parent
from mudpuppy_monitor.launch.output import LOG_FILE, MAX_LOG_BYTES, ROTATED_FILE, OutputLog, Tee
from mudpuppy_monitor.launch.signals import StopSignals

BOOT_DIR = Path(__file__).resolve().parent / "boot"
HANDOFF_FILE = "run-dir"
# after the command exits, how long its pipes may stay open (children it left behind)
EOF_GRACE_S = 2.0
# the job's own exit status is passed on by dying of the same signal (so that a shell loop stops)
RERAISED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LaunchSettings(NamedTuple):
    command: tuple[str, ...]
    root: Path
    name: str
    lora_every: int = 50
    log_max_bytes: int = MAX_LOG_BYTES


def child_environment(
    settings: LaunchSettings, *, attach: bool, handoff: Path, environ: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    old = env.get("PYTHONPATH")
    # an empty entry would mean the current directory: only join a non-empty PYTHONPATH
    env["PYTHONPATH"] = f"{BOOT_DIR}{os.pathsep}{old}" if old else str(BOOT_DIR)
    env["PYTHONUNBUFFERED"] = env.get("PYTHONUNBUFFERED") or "1"  # lines reach the log as printed
    env[hook.ENV_ROOT] = str(settings.root.resolve())
    env[hook.ENV_NAME] = settings.name
    env[hook.ENV_ATTACH] = "1" if attach else "0"
    env[hook.ENV_LORA_EVERY] = str(settings.lora_every)
    env[hook.ENV_HANDOFF] = str(handoff)
    env[hook.ENV_HOOK] = str(Path(hook.__file__).resolve())
    env[hook.ENV_CALLBACK] = str(Path(mudpuppy_callback.__file__).resolve())
    return env


def _say(message: str) -> None:
    print(f"mudpuppy-monitor: {message}", file=sys.stderr, flush=True)


class Job:
    """The run directory side of one job: where its output goes and where its `end` goes."""

    def __init__(self, settings: LaunchSettings, scratch: Path) -> None:
        self.settings = settings
        self.root = settings.root.resolve()
        self.handoff = scratch / HANDOFF_FILE
        self.placeholder: Path | None = None  # a directory this launcher created for the run
        self.run_dir: Path | None = None
        wanted = self.root / settings.name
        try:
            wanted.parent.mkdir(parents=True, exist_ok=True)
            wanted.mkdir()
        except FileExistsError:
            pass  # taken: the job's Trainer decides (see the module docstring)
        except OSError as exc:
            raise UsageError(f"cannot create {wanted}: {exc.strerror or exc}") from None
        else:
            self.placeholder = self.run_dir = wanted
            try:
                write_meta(wanted, name=settings.name, command=settings.command)
            except OSError as exc:
                _remove_placeholder(wanted)
                raise UsageError(f"cannot write in {wanted}: {exc.strerror or exc}") from None
        self.log = OutputLog(self.run_dir or scratch, max_bytes=settings.log_max_bytes)

    def follow_handoff(self) -> None:
        """Move the output to the run the job's Trainer reported, once it has reported one."""
        try:
            reported = Path(self.handoff.read_text(encoding="utf-8"))
        except OSError:
            return
        if reported == self.run_dir or not reported.is_dir():
            return
        self.log.move_to(reported)
        if self.placeholder is not None and self.placeholder != reported:
            _remove_placeholder(self.placeholder)
            self.placeholder = None
        self.run_dir = reported

    def claim_now(self) -> Path:
        """The job ended without a Trainer reporting a run: claim `<name>` (or `-2`, ...)."""
        path = Path(mudpuppy_callback._claim_dir(str(self.root), self.settings.name, False))
        name = path.relative_to(self.root).as_posix()
        write_meta(path, name=name, command=self.settings.command)
        self.log.move_to(path)
        self.run_dir = path
        return path


def _remove_placeholder(path: Path) -> None:
    # Only what this launcher put there: its meta.json and an emptied log.
    for name in ("meta.json", LOG_FILE, ROTATED_FILE):
        try:
            (path / name).unlink()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass  # something else is in it now: leave it


def resolve_command(command: Sequence[str]) -> str | None:
    return shutil.which(command[0])


def run_job(settings: LaunchSettings) -> int:
    if resolve_command(settings.command) is None:
        _say(f"command not found: {settings.command[0]}")
        return 127
    signals = StopSignals()  # before any thread exists, so that every thread blocks them
    scratch = Path(tempfile.mkdtemp(prefix="mudpuppy-run-"))
    try:
        returncode = _run(settings, signals, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return exit_status(returncode)


def _run(settings: LaunchSettings, signals: StopSignals, scratch: Path) -> int:
    job = Job(settings, scratch)
    env = child_environment(settings, attach=job.run_dir is not None, handoff=job.handoff)
    pdeathsig = die_with_parent(signal.SIGTERM)

    def child_setup() -> None:
        signals.restore_in_child()
        if pdeathsig is not None:
            pdeathsig()

    try:
        proc = subprocess.Popen(
            settings.command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=child_setup,
        )
    except OSError as exc:
        if job.placeholder is not None:
            _remove_placeholder(job.placeholder)
        _say(f"cannot run {settings.command[0]}: {exc.strerror or exc}")
        return 126
    if job.run_dir is not None:
        _say(f"recording {shown(job.run_dir)} (output in {LOG_FILE} there)")
    else:
        _say(
            f"{shown(job.root / settings.name)} exists: a Trainer resumed from a checkpoint continues "
            "it, anything else gets a new run"
        )
    signals.watch(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    tee = Tee(
        [
            (proc.stdout.fileno(), _terminal(sys.stdout)),
            (proc.stderr.fileno(), _terminal(sys.stderr)),
        ],
        job.log,
        tick=job.follow_handoff,
    )
    tee.start()
    returncode = proc.wait()
    tee.finish(EOF_GRACE_S)
    proc.stdout.close()  # a process the job left behind may still hold the write ends
    proc.stderr.close()
    try:
        end_run(job, Outcome(returncode, signals.received))
    except OSError as exc:  # the run directory was deleted or cannot be written
        _say(f"cannot record how the job ended: {exc}")
    return returncode


def end_run(job: Job, outcome: Outcome) -> None:
    job.follow_handoff()
    run_dir = job.run_dir or job.claim_now()
    job.log.close()
    end = last_event(run_dir)
    if end is None or end["kind"] != "end":
        end = append_end(run_dir, end_fields(outcome, read_output_tail(run_dir)))
    detail = f": {end['error']}" if end.get("error") else ""
    _say(f"{shown(run_dir)}: {end['status']}{detail}")


def shown(path: Path) -> str:
    """A path as the user gave it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def exit_status(returncode: int) -> int:
    """The command's exit code; for a command killed by a stop signal, die of it as well."""
    if returncode >= 0:
        return returncode
    sig = -returncode
    if sig in RERAISED:
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        signal.raise_signal(sig)  # to this thread: the signal thread would take a process-wide one
    return 128 + sig


def _terminal(stream: object) -> int | None:
    try:
        stream.flush()  # type: ignore[attr-defined]
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
