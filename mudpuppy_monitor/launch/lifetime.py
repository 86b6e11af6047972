"""Children that do not outlive their parent: Linux's parent-death signal.

A process started with `preexec_fn=die_with_parent(sig)` receives `sig` when the process that
started it dies, however it dies (SIGKILL included). Elsewhere there is no such signal and the
function returns None (nothing to run).
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False  # not typing's: its import costs every job's start-up
if TYPE_CHECKING:
    from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process dies, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return setup
