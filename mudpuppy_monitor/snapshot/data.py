"""What a snapshot embeds: the runs' summaries, a short detail, the config diff, the series the
charts show (decimated like the daemon's answers) and the LoRA norms, within a size budget.

Columns travel as base64 of little-endian typed arrays: steps as int32 (float64 past int32),
values as float32 (NaN and the infinities survive), times as float32 seconds after the series'
first time. A point costs 16 characters whatever its value, so the budget fixes the resolution:
`points_per_series` picks the most points each series may keep (min/max per bucket, first and
last point kept) so the whole page stays under `max_bytes`.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.core.protocols import RunQueries

# the series the dashboard's charts draw (web/views.js CHARTS); a test keeps the two in step
CHART_SERIES = (
    "loss",
    "eval_loss",
    "learning_rate",
    "grad_norm",
    "steps_per_s",
    "tokens_per_s",
    "mem_allocated",
    "mem_peak",
)
FORMAT = "mudpuppy-snapshot/1"
MAX_POINTS = 2000  # per series: what the dashboard asks the daemon for
MIN_POINTS = 64
LORA_COLUMNS = 200  # as the dashboard's LoRA panel asks
MIN_LORA_COLUMNS = 8
LORA_SHARE = 0.25  # of the data budget, at most, for the LoRA matrices
POINT_CHARS = 16  # base64 of int32 step + float32 time + float32 value
SERIES_OVERHEAD = 160  # keys, counts, dtypes of one series in the JSON
DEFAULT_MAX_BYTES = 5_000_000
INT32_MAX = 2**31 - 1


def b64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values).tobytes()).decode("ascii")


def encode_steps(steps: np.ndarray) -> dict[str, str]:
    if len(steps) and (steps.min() < -INT32_MAX or steps.max() > INT32_MAX):
        return {"sd": "f8", "s": b64(steps.astype("<f8"))}
    return {"sd": "i4", "s": b64(steps.astype("<i4"))}


def encode_series(col: dict[str, Any]) -> dict[str, Any]:
    steps, ts, ys = col["step"], col["t"], col["y"]
    finite = ts[np.isfinite(ts)]
    t0 = float(finite.min()) if len(finite) else None
    offsets = (ts - t0) if t0 is not None else np.full(len(ts), np.nan)
    return {
        "count": int(col["count"]),
        "decimated": bool(col["decimated"]),
        "k": len(ys),
        **encode_steps(steps),
        "t0": t0,
        "t": b64(offsets.astype("<f4")),
        "y": b64(ys.astype("<f4")),
    }


def decode_series(col: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, unix times, values) of an encoded series (the inverse of `encode_series`)."""
    steps = np.frombuffer(base64.b64decode(col["s"]), dtype="<" + col["sd"])
    offsets = np.frombuffer(base64.b64decode(col["t"]), dtype="<f4").astype(np.float64)
    t0 = col["t0"]
    ts = offsets + t0 if t0 is not None else np.full(len(offsets), np.nan)
    ys = np.frombuffer(base64.b64decode(col["y"]), dtype="<f4").astype(np.float64)
    return steps, ts, ys


def encode_lora(lora: dict[str, Any]) -> dict[str, Any]:
    """The /lora answer with its matrices as float32 base64, one string per row."""
    out: dict[str, Any] = {
        "layers": list(lora.get("layers") or []),
        "steps": b64(np.asarray(lora.get("steps") or [], dtype="<f8")),
        "t": b64(np.asarray([_nan(t) for t in lora.get("t") or []], dtype="<f8")),
    }
    for key in ("A", "B", "update"):
        rows = lora.get(key) or []
        out[key] = [b64(np.asarray(row, dtype="<f4")) for row in rows]
    return out


def _nan(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def detail_of(detail: dict[str, Any], series: Sequence[str]) -> dict[str, Any]:
    """What the dashboard reads of a run's detail; meta is cut to its name and config (a shared
    report does not carry the command line, host paths or environment of the job)."""
    meta = detail.get("meta") or {}
    markers = []
    for m in detail.get("markers") or []:
        t = m.get("t")
        markers.append({**m, "t": t if isinstance(t, (int, float)) and math.isfinite(t) else None})
    return {
        "id": detail["id"],
        "summary": detail["summary"],
        "meta": {k: meta[k] for k in ("name", "config") if k in meta},
        "source": detail.get("source"),
        "series": list(series),
        "counts": {k: v for k, v in (detail.get("counts") or {}).items() if k in series},
        "lora_layers": list(detail.get("lora_layers") or []),
        "lora_snapshots": detail.get("lora_snapshots", 0),
        "bad_lines": detail.get("bad_lines", 0),
        "last_bad_line": None,
        "errors": detail.get("errors") or {},
        "markers": markers,
        "generation": detail.get("generation"),
    }


def points_per_series(data_bytes: float, series_total: int) -> int:
    """The most points a series may keep so that `series_total` series fit in `data_bytes`.
    Decimation keeps up to 1.5 x the asked points plus the two ends, hence the margin."""
    if series_total <= 0:
        return MAX_POINTS
    per = (data_bytes / series_total - SERIES_OVERHEAD) / POINT_CHARS
    asked = int((per - 2) / 1.5)
    return max(MIN_POINTS, min(MAX_POINTS, asked))


def lora_columns(data_bytes: float, cells_per_column: int) -> int:
    """Columns of the LoRA matrices so that they take at most `data_bytes` (float32 base64)."""
    if cells_per_column <= 0:
        return LORA_COLUMNS
    per = data_bytes / (cells_per_column * 4 * 4 / 3 + 1)
    return max(MIN_LORA_COLUMNS, min(LORA_COLUMNS, int(per)))


def collect(
    runs: RunQueries,
    ids: Sequence[str],
    *,
    fixed_bytes: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    view: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The document a snapshot embeds, for the runs `ids` (unknown ones are left out).
    `fixed_bytes` is what the page costs without data (scripts, styles)."""
    summaries = []
    details: dict[str, Any] = {}
    names: dict[str, list[str]] = {}
    lora_cells: dict[str, int] = {}
    for run_id in ids:
        detail = runs.detail(run_id)
        if detail is None:
            continue
        names[run_id] = [n for n in detail.get("series") or [] if n in CHART_SERIES]
        details[run_id] = detail_of(detail, names[run_id])
        summaries.append(detail["summary"])
        if detail.get("lora_snapshots"):
            lora_cells[run_id] = 3 * len(detail.get("lora_layers") or [])
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created": time.time() if now is None else now,
        "view": view,
        "runs": summaries,
        "details": details,
        "config": runs.config_diff(list(details)),
        "series": {},
        "lora": {},
    }
    base = fixed_bytes + len(jsonutil.dumps(doc))
    budget = max(0.0, (max_bytes - base) * 0.97)
    cells = sum(lora_cells.values())
    lora_budget = min(LORA_SHARE * budget, cells * LORA_COLUMNS * 6)
    cols = lora_columns(lora_budget, cells)
    for run_id in lora_cells:
        got = runs.lora(run_id, points=cols)
        if got is not None:
            doc["lora"][run_id] = encode_lora(got)
    used = len(jsonutil.dumps(doc["lora"]))
    per = points_per_series(budget - used, sum(len(v) for v in names.values()))
    for run_id, wanted in names.items():
        got = runs.columns(run_id, wanted, points=per)
        doc["series"][run_id] = {name: encode_series(col) for name, col in got.items()}
    doc["points_per_series"] = per
    doc["lora_columns"] = cols
    return doc
