"""Stop signals while a job runs: the launcher survives them, the whole job receives them once.

The job shares the launcher's process group, so job control works as if the command ran alone
(Ctrl-Z, `fg`, reading the terminal). A signal the kernel sent to the group (Ctrl-C, Ctrl-\\ and
hang-up from the terminal) has therefore reached every process of the job already; a signal sent
to the launcher alone (`kill PID`, a scheduler) is passed on to every process of the job in that
group, the way the terminal would have. Processes the job put in groups of their own (torchrun's
workers) get it from their parent, as they would without the launcher.

On Linux `sigwaitinfo` says who sent a signal (`si_code`); where it is missing, a signal is
taken as the terminal's when the launcher is in the terminal's foreground.
"""

from __future__ import annotations

# the C module under `signal`: the same functions, without the enums `signal` builds on import
# (enum, functools, collections), which every job would wait for before its command starts
import _signal as signal
import os

TYPE_CHECKING = False  # not typing's: its import costs every job's start-up
if TYPE_CHECKING:
    from collections.abc import Callable

WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's line discipline)


def descendants_in_group(root_pid: int, pgid: int, proc: str = "/proc") -> list[int]:
    """`root_pid` and its descendants whose process group is `pgid`, from /proc (Linux).
    Elsewhere: `[root_pid]`."""
    try:
        entries = os.listdir(proc)
    except OSError:
        return [root_pid]
    children: dict[int, list[int]] = {}
    groups: dict[int, int] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as f:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
                fields = f.read().rsplit(b")", 1)[1].split()
            pid, ppid, group = int(entry), int(fields[1]), int(fields[2])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not readable
        children.setdefault(ppid, []).append(pid)
        groups[pid] = group
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        if groups.get(pid, pgid) == pgid:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _from_terminal_fallback() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class StopSignals:
    """Blocks the stop signals in this process (call before any thread starts) and handles them
    in one thread once `watch(child_pid)` is called. `received` is the first one (or None)."""

    def __init__(self, on_signal: Callable[[int], None] = lambda sig: None) -> None:
        self.received: int | None = None
        self.on_signal = on_signal
        self._child: int | None = None
        self._pgid = os.getpgrp()
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)

    def restore_in_child(self) -> None:
        """For the child between fork and exec: the signal mask it would have had."""
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def watch(self, child_pid: int) -> None:
        import threading  # after the child has started: its import is not on the way there

        self._child = child_pid
        threading.Thread(target=self._loop, name="mudpuppy-signals", daemon=True).start()

    def _loop(self) -> None:
        while True:
            sig, from_group = self._wait()
            if self.received is None:
                self.received = sig
            self.on_signal(sig)
            if not from_group:
                self.forward(sig)

    def _wait(self) -> tuple[int, bool]:
        if hasattr(signal, "sigwaitinfo"):
            info = signal.sigwaitinfo(WATCHED)
            return info.si_signo, info.si_code == SI_KERNEL
        sig = signal.sigwait(WATCHED)
        return sig, _from_terminal_fallback()

    def forward(self, sig: int) -> None:
        if self._child is None:
            return
        for pid in descendants_in_group(self._child, self._pgid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass  # exited meanwhile
