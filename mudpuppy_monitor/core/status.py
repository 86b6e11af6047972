"""The status machine of a run (docs/core.md, "Status"): pure functions of what was read and now.

- `completed` / `failed` / `interrupted`: an `end` event after the last `start` (or, for HF and
  LLaMA-Factory dirs, the trainer's own sign of the end: a summary row, the last step reached).
- `crashed`: the writer ran on this host, its pid is gone, and no `end` came.
- `stalled`: alive (or unknowable) but silent for longer than the stall window:
  max(60 s, 10 x the median gap between its recent events).
- `unknown`: no pid to check (another host, or a foreign source) and silent for much longer:
  max(15 min, 3 x the stall window), or no event read at all (only meta.json, only bad lines).
- `running`: everything else.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

MIN_STALL_S = 60.0
STALL_GAPS = 10.0
MIN_UNKNOWN_S = 900.0
UNKNOWN_WINDOWS = 3.0

PidAlive = Callable[[int], bool]


def default_pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the state letter follows the parenthesised command name
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def this_host() -> str:
    return socket.gethostname()


def stall_window(gap: float | None) -> float:
    return max(MIN_STALL_S, STALL_GAPS * gap) if gap else MIN_STALL_S


def run_status(
    *,
    ended: str | None,
    silence_s: float | None,
    gap_s: float | None,
    local_pid: int | None,
    pid_alive: PidAlive,
) -> str:
    """`local_pid` is the writer's pid when it ran on this host, else None."""
    if ended:
        return ended
    window = stall_window(gap_s)
    if local_pid is not None:
        if not pid_alive(local_pid):
            return "crashed"
        return "stalled" if silence_s is not None and silence_s > window else "running"
    if silence_s is None:
        # no event ever read (only meta.json, an empty or all-garbage events file) and no pid to
        # check: nothing says it is running
        return "unknown"
    if silence_s > max(MIN_UNKNOWN_S, UNKNOWN_WINDOWS * window):
        return "unknown"
    return "stalled" if silence_s > window else "running"
