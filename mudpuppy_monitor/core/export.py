"""Full-fidelity export of a run: every stored point, as CSV or JSON lines, in chunks."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import Any

import orjson
from mudpuppy_callback import encode_number

from mudpuppy_monitor.core.queries import export_rows
from mudpuppy_monitor.core.run import RunState

FORMATS = ("csv", "jsonl")
HEADER = ("series", "step", "t", "value")
CHUNK_ROWS = 8192


def _num(x: float) -> str:
    return repr(x) if math.isfinite(x) else str(encode_number(x))


def export_chunks(
    run: RunState, fmt: str, lock: Any = None, superseded: bool = False
) -> Iterator[str]:
    """CSV (`series,step,t,value`; t empty when unknown) or JSONL (one object per point).

    With `superseded`, the points resumed attempts replaced follow, and every row says which it
    is: a fifth CSV column `superseded` (0 or 1), a JSON field `"superseded"` (false or true).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = export_rows(run, lock, superseded)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow((*HEADER, "superseded") if superseded else HEADER)
        n = 0
        for name, step, t, v, old in rows:
            cells = (name, step, _num(t) if math.isfinite(t) else "", _num(v))
            w.writerow((*cells, int(old)) if superseded else cells)
            n += 1
            if n % CHUNK_ROWS == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
        return
    parts: list[str] = []
    for name, step, t, v, old in rows:
        obj: dict[str, Any] = {
            "series": name,
            "step": step,
            "t": t if math.isfinite(t) else None,
            "value": v if math.isfinite(v) else encode_number(v),
        }
        if superseded:
            obj["superseded"] = old
        parts.append(orjson.dumps(obj).decode())
        if len(parts) >= CHUNK_ROWS:
            yield "\n".join(parts) + "\n"
            parts = []
    if parts:
        yield "\n".join(parts) + "\n"
