"""The last lines of one run's output (its `output.log`) under the runs table.

The lines are the job's own bytes: ANSI escape sequences are removed and every other control or
bidi character becomes `?` (mudpuppy_monitor.inert), so the job's output cannot move the cursor,
retitle the window or write the clipboard through the view. A progress-bar snapshot (a line
ending in `\\r`) is shown only while it is the newest line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from mudpuppy_monitor.inert import inert
from mudpuppy_monitor.tracebacks import strip_ansi

MAX_LOG_LINES = 10  # at most this many lines of output, and at most a quarter of the height


@dataclass(frozen=True)
class LogTail:
    """What the view shows of one run's output: its name and its last lines."""

    run_id: str
    name: str
    lines: Sequence[str]


def shown_lines(lines: Sequence[str]) -> list[str]:
    """The lines as a terminal may print them (snapshots that were followed left out)."""
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if line.endswith("\r") and i < last:
            continue
        out.append(inert(strip_ansi(line.rstrip("\r")).replace("\t", "    ")))
    return out


def log_section(log: LogTail | None, max_lines: int) -> list[Text]:
    """A title line and up to `max_lines` lines of output (none when there is no log)."""
    if log is None or max_lines <= 0:
        return []
    lines = shown_lines(log.lines)[-max_lines:]
    title = Text(f"output of {inert(log.name)}", style="bold")
    if not lines:
        title.append("  (nothing yet)", style="dim")
    return [title, *(Text(line, style="dim") for line in lines)]


def log_height(log: LogTail | None, height: int) -> int:
    """The lines of output the view has room for in `height` terminal lines."""
    if log is None:
        return 0
    return min(MAX_LOG_LINES, max(1, height // 4) - 1)
