"""What `run --serve` and `run --tui` run next to the job.

- `--serve`: `mudpuppy-monitor serve ROOT` as a process of its own, in a process group of its
  own (Ctrl-C while the job runs is the job's), with the parent-death signal. When the job has
  ended and its `end` line is written, the daemon keeps serving the final state until Ctrl-C (or
  any stop signal `run` receives), and `run` says so.
- `--tui`: the terminal view in a thread of the launcher, on the same terminal; the job's output
  then goes only to output.log, and the view shows its last lines. When the job has ended, the
  view draws one more frame (the final state, `end` included), leaves the alternate screen and
  prints that frame where it stays.

Either way `run` exits with the command's exit status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from mudpuppy_monitor.launch.lifetime import die_with_parent
from mudpuppy_monitor.launch.signals import StopSignals
from mudpuppy_monitor.launch.start import LaunchSettings, Started, say

STOP_WAIT_S = 10.0  # the daemon's own graceful shutdown, then it is killed


class View:
    owns_terminal = False  # True: the job's output goes to output.log only

    def follow(self, run_dir: Path | None) -> None:
        """The job's run directory (it may change once its Trainer starts)."""

    def finish(self, ended: str | None) -> None:
        """The job has ended and its run says so (`ended`: what `run` said about it)."""


def open_view(settings: LaunchSettings, started: Started, signals: StopSignals) -> View | None:
    if settings.view == "serve":
        return ServeAlongside(settings, started.root, signals)
    if settings.view == "tui":
        return TuiAlongside(settings, started.root, started.run_dir)
    return None


class ServeAlongside(View):
    def __init__(self, settings: LaunchSettings, root: str, signals: StopSignals) -> None:
        self.signals = signals
        self.port = settings.port
        self.url = f"http://127.0.0.1:{settings.port}/"
        command = [sys.executable, "-m", "mudpuppy_monitor", "serve", root]
        command += ["--port", str(settings.port)]
        if settings.open_browser:
            command.append("--open")
        pdeathsig = die_with_parent(signal.SIGTERM)

        def setup() -> None:
            signals.restore_in_child()
            os.setpgid(0, 0)  # not in the terminal's foreground group: Ctrl-C is the job's
            if pdeathsig is not None:
                pdeathsig()

        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=setup)
        except OSError as exc:
            say(f"the dashboard did not start: {exc}")

    def finish(self, ended: str | None) -> None:
        proc = self.proc
        if proc is None:
            return
        stop = threading.Event()
        self.signals.on_signal = lambda sig: stop.set()
        # a job shorter than the daemon's start-up: say where it serves once it does
        while not self._listening() and proc.poll() is None and not stop.wait(0.1):
            pass
        if proc.poll() is not None:
            say(f"the dashboard is not running (serve exited with {proc.returncode})")
            return
        if not stop.is_set():
            say(f"the job has ended; still serving {self.url} (Ctrl-C to stop)")
        while not stop.wait(0.5):
            if proc.poll() is not None:  # it ended on its own (killed, or a fatal error)
                return
        try:
            os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C would, had it been in the foreground
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            proc.wait()

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


class TuiAlongside(View):
    owns_terminal = True

    def __init__(self, settings: LaunchSettings, root: str, run_dir: str | None) -> None:
        from mudpuppy_monitor.tui.app import TuiView

        self.root = root
        self.stop = threading.Event()
        self.views: list[TuiView] = []  # the view the thread built, for follow()
        self.failed: BaseException | None = None
        self.log_run = _relative(run_dir, root) if run_dir is not None else settings.name
        self.thread = threading.Thread(target=self._run, name="mudpuppy-tui", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from mudpuppy_monitor.tui import app

        try:
            app.main_tui(
                Path(self.root), log_run=self.log_run, stop=self.stop, on_view=self.views.append
            )
        except BaseException as exc:  # noqa: BLE001 - the job goes on; said at the end
            self.failed = exc

    def follow(self, run_dir: Path | None) -> None:
        if run_dir is None:
            return
        self.log_run = _relative(str(run_dir), self.root)
        for view in self.views:
            view.log_run = self.log_run

    def finish(self, ended: str | None) -> None:
        self.stop.set()
        self.thread.join()
        if self.failed is not None:
            say(f"the terminal view failed: {self.failed!r}")
        if ended:
            say(ended)  # said while the view was on the screen: say it where it stays


def _relative(path: str, root: str) -> str:
    rel = os.path.relpath(os.path.realpath(path), root)
    return rel.replace(os.sep, "/")
