"""Turning what a file says into the numbers the store keeps: one set of rules for every source.

- a step is an int in 0..STEP_MAX (integral floats accepted): steps live in int64 columns, so a
  step outside that range is a bad line in every source (building the column would raise);
- a value is a float; an int too large for a float is +-inf (as `decode_number` returns it);
  `as_number` also reads numeric strings ("0.00") and the run format's non-finite strings;
- JSON is read with orjson, and with Python's json when orjson refuses it (the bare NaN and
  Infinity tokens that `json.dump` writes, a UTF-8 byte-order mark).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from mudpuppy_callback import MAX_STEP

# the bound is the format's own, so writer and reader agree on it
STEP_MAX = MAX_STEP - 1
INT32_MAX = 2**31 - 1


def as_step(v: object) -> int | None:
    """A logged step as an int in 0..STEP_MAX (integral floats accepted), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        if not v.is_integer():  # also NaN and the infinities
            return None
        v = int(v)
    if isinstance(v, int) and 0 <= v <= STEP_MAX:
        return v
    return None


def as_float(v: int | float) -> float:
    """A number as a float; an int too large for a float is +-inf (as decode_number does)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def as_number(v: Any) -> float | None:
    """A logged value as a float: numbers, numeric strings ("0.00"), the non-finite strings;
    None for anything else (booleans, null, lists, text)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return as_float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def as_positive_int32(v: object) -> int | None:
    """An int in 1..2**31-1 (a pid, a process count), else None: a pid outside pid_t would make
    os.kill raise OverflowError."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= INT32_MAX else None


def loads_lenient(data: bytes) -> Any:
    """Parse JSON: orjson first (fast, strict), then Python's json for what orjson refuses.
    Raises ValueError when neither can read it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data.decode("utf-8").lstrip("\ufeff"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
