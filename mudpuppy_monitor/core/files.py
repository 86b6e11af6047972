"""Opening a run's files safely: one rule for every reader (meta.json, events.jsonl,
trainer_state.json, trainer_log.jsonl).

- A symlink is followed only when its target resolves inside the root; anything else is opened
  with O_NOFOLLOW, so a link swapped in after the check is refused rather than followed.
- Files are opened with O_NONBLOCK and checked with fstat to be regular files before any read:
  a FIFO (or a device) named like a run file would otherwise block the reader forever.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from typing import Any

from mudpuppy_monitor.core.coerce import loads_lenient

OUT_OF_ROOT = "symlink out of the root, not followed"
NOT_REGULAR = "not a regular file"


class Refused(Exception):
    """The file exists but is not read (see the module doc); str() is the reason."""


def inside_root(path: str, root: str | None) -> bool:
    """Does `path`, symlinks resolved, lie inside `root` (a resolved path)? True without a root."""
    if root is None:
        return True
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def open_regular(path: str, root: str | None) -> tuple[int, os.stat_result]:
    """(fd, its fstat) of a regular file that may be read; the caller closes the fd.

    Raises FileNotFoundError when it is missing, Refused for a symlink out of the root or a file
    that is not regular, OSError for the rest (permission denied, a symlink loop ...).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    target: os.stat_result | None = None
    if os.path.islink(path):
        if not inside_root(path, root):
            raise Refused(OUT_OF_ROOT)
        target = os.stat(os.path.realpath(path))
    else:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if target is not None and (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
            raise Refused(OUT_OF_ROOT)  # the link changed between the check and the open
        if not stat_mod.S_ISREG(st.st_mode):
            raise Refused(NOT_REGULAR)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def describe(path: str, exc: BaseException) -> str:
    """The error text shown for a file that could not be read."""
    name = os.path.basename(path)
    if isinstance(exc, Refused):
        return f"{name}: {exc}"
    if isinstance(exc, OSError):
        return f"{name}: {os.strerror(exc.errno or errno.EIO)}"
    return f"{name}: {exc}"


def read_json_file(path: str, limit: int, root: str | None) -> tuple[Any, str | None]:
    """(parsed JSON or None, error text or None); never raises for a bad or missing file."""
    try:
        fd, _ = open_regular(path, root)
    except FileNotFoundError:
        return None, None
    except (OSError, Refused) as exc:
        return None, describe(path, exc)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        return None, describe(path, exc)
    if len(data) > limit:
        return None, f"{os.path.basename(path)}: larger than {limit >> 20} MiB, not read"
    # Python's json.dump (so transformers' trainer_state.json) writes bare NaN/Infinity for a
    # NaN loss: loads_lenient reads those tokens too
    try:
        return loads_lenient(data), None
    except ValueError:
        return None, f"{os.path.basename(path)}: not valid JSON (yet)"
