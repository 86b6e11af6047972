"""`POST /api/series`: the decimated series of many runs in one request.

A page that overlays twenty runs would otherwise ask twenty details and twenty series. The
request is a JSON body (a list of run ids needs no separator, so an id may hold a comma, and no
URL length limit applies); it reads and changes nothing on disk. Everything in it is bounded:
the body's size, the number of runs and of series names, and the values in the answer (the
resolution asked for is lowered so that runs x names x points stays within MAX_VALUES).
The rules are written down in docs/protocol.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.core.discovery import valid_run_id
from mudpuppy_monitor.core.protocols import RunQueries
from mudpuppy_monitor.server.feed import markers_json
from mudpuppy_monitor.server.params import MAX_POINTS, ApiError

MAX_BODY_BYTES = 1 << 20
MAX_RUNS = 200
MAX_NAMES = 64
MAX_NAME_CHARS = 256
# values (points of one series of one run) in one answer: 100 runs x 8 series x 2,000 points fit
MAX_VALUES = 2_000_000
DEFAULT_POINTS = 2000
FIELDS = frozenset({"runs", "names", "x", "from", "to", "points"})


@dataclass(frozen=True)
class BatchQuery:
    runs: tuple[str, ...]
    names: tuple[str, ...]
    x: str
    start: float | None
    end: float | None
    points: int  # after the budget: what each series is decimated to


def parse_body(body: bytes) -> BatchQuery:
    """The request body, validated; ApiError(400) names the first thing wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body larger than {MAX_BODY_BYTES >> 20} MiB")
    try:
        doc = jsonutil.loads(body)
    except ValueError:
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = sorted(str(k) for k in doc if k not in FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field: {unknown[0]}")
    runs = _strings(doc.get("runs"), "runs", MAX_RUNS, 1024)
    bad = next((r for r in runs if not valid_run_id(r)), None)
    if bad is not None:
        raise ApiError(400, f"runs: not a run id: {bad[:80]!r}")
    names = _strings(doc.get("names"), "names", MAX_NAMES, MAX_NAME_CHARS)
    x = doc.get("x", "step")
    if x not in ("step", "time"):
        raise ApiError(400, "x must be step or time")
    start = _finite(doc.get("from"), "from")
    end = _finite(doc.get("to"), "to")
    points = _points(doc.get("points", DEFAULT_POINTS))
    budget = MAX_VALUES // (len(runs) * len(names))
    return BatchQuery(runs, names, x, start, end, max(2, min(points, budget)))


def _strings(value: Any, field: str, most: int, longest: int) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= most
        or not all(isinstance(v, str) and 0 < len(v) <= longest for v in value)
    ):
        raise ApiError(400, f"{field} must be a list of 1 to {most} non-empty strings")
    return tuple(dict.fromkeys(value))  # in order, each once


def _finite(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{field} must be a number")
    if not math.isfinite(value):
        raise ApiError(400, f"{field} must be finite")
    return float(value)


def _points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "points must be an integer")
    return max(2, min(MAX_POINTS, value))


def answer(runs: RunQueries, q: BatchQuery) -> dict[str, Any]:
    """Per run found: its generation, series, markers and LoRA snapshot count; the others are
    listed as missing (removed since the client heard of them)."""
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for run_id in q.runs:
        entry = _run_entry(runs, run_id, q)
        if entry is None:
            missing.append(run_id)
        else:
            found.append(entry)
    return {"x": q.x, "points": q.points, "runs": found, "missing": missing}


def _run_entry(runs: RunQueries, run_id: str, q: BatchQuery) -> dict[str, Any] | None:
    # detail and series are read under two takes of the core's lock: a reset in between shows
    # as two generations, and the pair is read again
    for _ in range(2):
        detail = runs.detail(run_id)
        if detail is None:
            return None
        got = runs.series(run_id, q.names, x=q.x, start=q.start, end=q.end, points=q.points)
        if got.generation is None:
            return None
        if got.generation == detail["generation"]:
            return {
                "id": run_id,
                "generation": got.generation,
                "series": got,
                "markers": markers_json(detail["markers"]),
                "lora_snapshots": detail["lora_snapshots"],
            }
    return None
