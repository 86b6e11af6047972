"""The exception that ended a Python program, read from the end of its output.

Used where a job's output is at hand: the launcher, when the job exited without an `end` line,
and the daemon, for a failed or crashed run whose `end` carries no error (docs/launch.md,
docs/core.md). A leaf module: the standard library only, nothing compiled at import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

WINDOW_LINES = 100  # a traceback further up is not what ended the job
_RANK_PREFIX = r"^\[(?:default)?rank\d+\]:\s?"  # torchrun's per-rank line prefix
# CSI (colours, cursor moves), OSC (titles, links; ended by BEL or ST) and two-byte escapes
_ANSI = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"


def strip_ansi(text: str) -> str:
    """`text` without ANSI escape sequences (colour codes, cursor moves, OSC titles)."""
    if "\x1b" not in text:
        return text
    return re.sub(_ANSI, "", text)


def last_exception(text: str | Sequence[str], window: int = WINDOW_LINES) -> str | None:
    """The exception line (`Type: message`) of the last Python traceback in the last `window`
    lines of `text` (a string, or its lines), or None. torchrun's `[rankN]:` prefixes and ANSI
    colour codes are ignored."""
    tail = text.splitlines()[-window:] if isinstance(text, str) else list(text[-window:])
    rank_prefix = re.compile(_RANK_PREFIX)  # compiled when needed: start-up time counts
    lines = [rank_prefix.sub("", strip_ansi(line)).rstrip("\r") for line in tail]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last):"):
            for line in lines[i + 1 :]:
                if line.strip() and not line[0].isspace():
                    return line.strip()
            return None
    return None
