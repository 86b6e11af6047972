"""Supervise one monitored job once its command has started (`entry.launch` forked it):
`supervise(settings, started, signals) -> exit code`.

1. The run directory: `<root>/<name>` was created before the command started when the name was
   free (the job's first Trainer records into it), and gets the launcher's `meta.json` now. When
   the name is taken, the choice waits for the job's Trainer: one resumed from a checkpoint
   continues that run, any other gets `<name>-2`, ... as the writer does; the output waits in a
   temporary file meanwhile.
2. The command runs with the startup hook on its PYTHONPATH (see hook.py), in the launcher's
   process group, with a parent-death signal (SIGTERM) so that it never outlives the launcher.
3. Its stdout and stderr go to the terminal unchanged and into the run's `output.log` (with
   `--tui`, only into the log: the terminal belongs to the view).
4. With `--serve` or `--tui` the daemon or the terminal view runs alongside (alongside.py).
5. When it exits, the run gets an `end` line unless the job wrote one, and the launcher exits with
   the command's exit status (dying of the same stop signal when the command did).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import mudpuppy_callback

from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.launch.ending import (
    Outcome,
    append_end,
    end_fields,
    last_event,
    read_output_tail,
    write_meta,
)
from mudpuppy_monitor.launch.output import LOG_FILE, ROTATED_FILE, OutputLog, Tee
from mudpuppy_monitor.launch.signals import StopSignals
from mudpuppy_monitor.launch.spawn import wait
from mudpuppy_monitor.launch.start import (
    HANDOFF_FILE,
    LaunchSettings,
    Started,
    child_environment,
    claim_run_dir,
    say,
)

__all__ = ["Job", "LaunchSettings", "Started", "child_environment", "supervise"]

# after the command exits, how long its pipes may stay open (children it left behind)
EOF_GRACE_S = 2.0
# the job's own exit status is passed on by dying of the same signal (so that a shell loop stops)
RERAISED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_UNCLAIMED = object()


class Job:
    """The run directory side of one job: where its output goes and where its `end` goes."""

    def __init__(
        self, settings: LaunchSettings, scratch: Path, claimed: object = _UNCLAIMED
    ) -> None:
        """`claimed`: the run directory already created for the job (None: the name was taken);
        when not given, it is claimed here."""
        self.settings = settings
        self.root = Path(settings.root).resolve()
        self.handoff = scratch / HANDOFF_FILE
        self.placeholder: Path | None = None  # a directory this launcher created for the run
        self.run_dir: Path | None = None
        if claimed is _UNCLAIMED:
            claimed = claim_run_dir(str(self.root), settings.name)
        if claimed is not None:
            wanted = Path(str(claimed))
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


def supervise(settings: LaunchSettings, started: Started, signals: StopSignals) -> int:
    """Everything after the command started: the run, the tee, the view alongside, the end."""
    try:
        returncode = _supervise(settings, started, signals)
    finally:
        shutil.rmtree(started.scratch, ignore_errors=True)
    return exit_status(returncode)


def _supervise(settings: LaunchSettings, started: Started, signals: StopSignals) -> int:
    from mudpuppy_monitor.launch.alongside import open_view

    signals.watch(started.pid)
    scratch = Path(started.scratch)
    job: Job | None = None
    try:
        job = Job(settings, scratch, claimed=started.run_dir)
    except UsageError as exc:  # the run directory cannot be written: the job runs unrecorded
        say(f"{exc}; the job runs without a record")
    if job is not None and job.run_dir is not None:
        say(f"recording {shown(job.run_dir)} (output in {LOG_FILE} there)")
    elif job is not None:
        say(
            f"{shown(job.root / settings.name)} exists: a Trainer resumed from a checkpoint continues "
            "it, anything else gets a new run"
        )
    view = open_view(settings, started, signals)  # after what is said: a view may take the screen

    def tick() -> None:
        if job is not None:
            job.follow_handoff()
            if view is not None:
                view.follow(job.run_dir)

    own_terminal = view is None or not view.owns_terminal
    tee = Tee(
        [
            (started.stdout_fd, _terminal(sys.stdout) if own_terminal else None),
            (started.stderr_fd, _terminal(sys.stderr) if own_terminal else None),
        ],
        job.log if job is not None else OutputLog(scratch),
        tick=tick,
    )
    tee.start()
    returncode = wait(started.pid)
    tee.finish(EOF_GRACE_S)
    os.close(started.stdout_fd)  # a process the job left behind may still hold the write ends
    os.close(started.stderr_fd)
    ended = None
    if job is not None:
        try:
            ended = end_run(job, Outcome(returncode, signals.received))
        except OSError as exc:  # the run directory was deleted or cannot be written
            say(f"cannot record how the job ended: {exc}")
    if view is not None:
        view.finish(ended)
    return returncode


def end_run(job: Job, outcome: Outcome) -> str:
    """Append the `end` the job did not write; returns what is said about it."""
    job.follow_handoff()
    run_dir = job.run_dir or job.claim_now()
    job.log.close()
    end = last_event(run_dir)
    if end is None or end["kind"] != "end":
        end = append_end(run_dir, end_fields(outcome, read_output_tail(run_dir)))
    detail = f": {end['error']}" if end.get("error") else ""
    message = f"{shown(run_dir)}: {end['status']}{detail}"
    say(message)
    return message


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
