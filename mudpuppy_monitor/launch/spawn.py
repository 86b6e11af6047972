"""Fork and exec the job's command, with nothing imported but `os` and `errno`.

`subprocess` would cost every job its import before the command starts; the launcher needs only
this much of it: the child's stdout and stderr on the given pipes, a setup step between fork and
exec (the signal mask, the parent-death signal), and exec errors reported back to the parent
through a close-on-exec pipe (as subprocess does), so a command that is not found is an exception
here and not a child exiting 127. File descriptors the launcher inherited pass to the command as
they would without it; everything the launcher opened itself is close-on-exec.

The launcher has a single thread when it forks (the tee and signal threads start afterwards), so
running Python between fork and exec is safe.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # not typing's: its import costs every job's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class CommandNotRunnable(Exception):
    """The command could not be executed; `exit_code` is what a shell would exit with."""

    def __init__(self, command: str, err: int) -> None:
        self.exit_code = 127 if err == errno.ENOENT else 126
        if err == errno.ENOENT:
            text = f"command not found: {command}"
        else:
            text = f"cannot run {command}: {os.strerror(err)}"
        super().__init__(text)


def spawn(
    command: Sequence[str],
    env: dict[str, str],
    stdout_fd: int,
    stderr_fd: int,
    setup: Callable[[], None],
) -> int:
    """Start `command` (searched on env's PATH) and return its pid."""
    if not command:
        raise ValueError("Expected a command, got an empty one")
    report_r, report_w = os.pipe()  # both ends close-on-exec
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = errno.ENOEXEC
        try:
            os.close(report_r)
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            setup()
            os.execvpe(command[0], list(command), env)
        except OSError as exc:
            code = exc.errno or errno.ENOEXEC
        except BaseException:
            pass
        try:
            os.write(report_w, str(code).encode())
        finally:
            os._exit(127)
    os.close(report_w)
    report = b""
    while chunk := os.read(report_r, 64):  # end of file: the exec closed it
        report += chunk
    os.close(report_r)
    if report:
        os.waitpid(pid, 0)
        raise CommandNotRunnable(command[0], int(report or errno.ENOEXEC))
    return pid


def wait(pid: int) -> int:
    """The child's exit status as subprocess reports it: the exit code, or -N for signal N."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0  # reaped elsewhere: nothing more to know
        if os.WIFSTOPPED(status):
            continue
        return os.waitstatus_to_exitcode(status)
