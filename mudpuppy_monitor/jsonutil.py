"""JSON for browsers and API clients: strict, fast, and NaN-preserving.

orjson writes NaN/Infinity as null, which would hide a NaN loss. Non-finite floats become the
strings of the run format ("NaN", "Infinity", "-Infinity") instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from mudpuppy_callback import encode_number

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class SafeDict(dict):  # type: ignore[type-arg]
    """A dict that json_safe made already: json_safe passes it on without walking it again (a
    run summary is made safe once, then sent inside many messages). Do not change it after."""


def safe_dict(obj: dict[str, Any]) -> SafeDict:
    """json_safe(obj), marked as such."""
    return SafeDict(json_safe(obj))


def json_safe(obj: Any) -> Any:
    """obj with every non-finite float as a string. Containers are copied, except a list of
    finite numbers and a SafeDict, which are returned as they are (the caller must not change
    them afterwards)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else encode_number(obj)
    if type(obj) is SafeDict:
        return obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list) and _all_finite_numbers(obj):
        return obj  # the common case (a column of finite numbers): no copy, no walk
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, np.floating):
        return json_safe(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _all_finite_numbers(values: list[Any]) -> bool:
    """True when every item is a finite int or float, in one C-level pass: a NaN or an infinity
    makes the sum non-finite, anything that is not a number (None, str, a nested list or dict)
    raises. A sum that overflows only means the slow path, which is exact."""
    try:
        return math.isfinite(sum(values, 0.0))
    except (TypeError, OverflowError):
        return False


def _array(a: np.ndarray) -> Any:
    """A 1-d int or all-finite float array goes to orjson as it is (written straight from its
    buffer, the same text as for Python numbers); any other array as a list, non-finite floats
    as strings."""
    if a.ndim == 1 and a.dtype.kind in "iuf" and a.dtype.itemsize == 8:
        if a.dtype.kind != "f" or np.isfinite(a).all():
            return (
                a
                if a.flags.c_contiguous and a.dtype.isnative
                else np.ascontiguousarray(a, a.dtype.newbyteorder("="))
            )
    return floats_to_json(a) if a.dtype.kind == "f" else a.tolist()


def floats_to_json(values: np.ndarray) -> list[Any]:
    """A float array as a list, non-finite entries as strings; fast when all are finite."""
    out = values.tolist()
    bad = ~np.isfinite(values)
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            out[i] = encode_number(out[i])
    return out


def dumps(obj: Any) -> bytes:
    safe = json_safe(obj)
    try:
        return orjson.dumps(safe, option=_OPTS)
    except TypeError:
        # Text read from the root may hold a lone surrogate ("\udcff" escaped in a JSON file),
        # which UTF-8 cannot carry: one such name must not break a whole answer.
        return orjson.dumps(_valid_text(safe), option=_OPTS)


def _valid_text(obj: Any) -> Any:
    """obj with every lone surrogate in its strings (keys too) as U+FFFD."""
    if isinstance(obj, str):
        return obj.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(obj, dict):
        return {_valid_text(k): _valid_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_valid_text(v) for v in obj]
    return obj


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
