"""Pure text formatters for the terminal view: numbers, durations, sparklines, bars.

Every function takes plain values and returns a plain string, so each can be tested without a
console and reused by other text outputs (`ls`, logs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

from mudpuppy_monitor.inert import inert

BLOCKS = "▁▂▃▄▅▆▇█"
# A non-finite point must stand out from every block height: a NaN loss is a result to see.
NONFINITE_CHAR = "×"
MISSING = "-"
NO_ETA = "--:--"
_BAR_EIGHTHS = " ▏▎▍▌▋▊▉"


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last `width` values as Unicode blocks scaled between their finite min and max.

    Non-finite values (NaN, +-inf) and None become NONFINITE_CHAR; a flat series is drawn at mid
    height (there is no scale to show); fewer values than `width` give a shorter string.
    """
    if width <= 0:
        return ""
    tail = list(values)[-width:]
    finite = [float(v) for v in tail if _finite(v)]
    if not finite:
        return NONFINITE_CHAR * len(tail)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    top = len(BLOCKS) - 1
    out = []
    for v in tail:
        if not _finite(v):
            out.append(NONFINITE_CHAR)
        elif span <= 0.0 or not math.isfinite(span):
            out.append(BLOCKS[top // 2])
        else:
            out.append(BLOCKS[round((float(v) - lo) / span * top)])
    return "".join(out)


def clean(text: object) -> str:
    """`text` as a string that is safe to print on a terminal: control and bidi characters
    (see mudpuppy_monitor.inert) become `?`."""
    return inert(text)


def format_eta(seconds: float | None) -> str:
    """`M:SS` under an hour, `H:MM:SS` under a day, `Nd HH:MM:SS` beyond; `--:--` when unknown."""
    if not _finite(seconds) or seconds < 0:
        return NO_ETA
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_age(seconds: float | None) -> str:
    """Time since the last event, two units at most: `42s`, `3m05s`, `2h07m`, `4d03h`."""
    if not _finite(seconds):
        return MISSING
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def format_number(x: float | None, digits: int = 4) -> str:
    """A metric in at most `digits` significant digits; NaN stays visible as `NaN`."""
    if x is None or isinstance(x, bool):
        return MISSING
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def format_bytes(n: float | None) -> str:
    """Bytes in binary units with one decimal: `61.2GiB`, `512.0MiB`."""
    if not _finite(n):
        return MISSING
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024.0:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024.0
    return f"{value:.1f}TiB"


def format_step(step: int | None, max_steps: int | None) -> str:
    if step is None:
        return MISSING
    if max_steps:
        return f"{step}/{max_steps}"
    return str(step)


def progress_bar(done: float | None, total: float | None, width: int) -> str:
    """A bar of `width` cells with eighth-cell resolution; blank cells when the total is unknown."""
    if width <= 0:
        return ""
    if not _finite(done) or not _finite(total) or total <= 0:
        return "·" * width
    frac = min(1.0, max(0.0, float(done) / float(total)))
    eighths = int(frac * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full
    if full < width:
        bar += _BAR_EIGHTHS[part] if part else ""
    return bar.ljust(width, "·")
