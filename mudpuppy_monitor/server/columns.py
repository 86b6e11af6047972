"""The series answer as binary columns: `Accept: application/x-mudpuppy-columns`.

The JSON answer writes every number as text, which the browser parses back one by one. The
binary answer sends the store's arrays as they are, and the dashboard makes typed arrays of them
without parsing (web/api.js `decodeColumns`). Non-finite values need no strings here: IEEE 754
carries NaN and the infinities.

Layout (all little-endian):

    8 bytes   MAGIC "MPCOLS01"
    u32       header length H
    H bytes   header, UTF-8 JSON, padded with spaces so that the data starts 8-byte aligned
    data      the columns, each at an 8-byte aligned offset from the start of the data

Header: {"run", "generation", "x", "series": {name: {"count", "decimated", "n",
"x": {"dtype": "i4"|"f8"|"i8", "offset"}, "y": {"dtype": "f8", "offset"}}}}. Steps are "i4" when
they fit in 32 bits (4 bytes a point instead of 8), else "f8" while exact as a double (below
2**53), else "i8"; times are "f8". `n` is the number of points sent, `count` as in the JSON
answer.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

MEDIA_TYPE = "application/x-mudpuppy-columns"
MAGIC = b"MPCOLS01"
_LEN = struct.Struct("<I")
_EXACT = 2**53  # integers up to here are exact as doubles


def wants_binary(accept: str | None) -> bool:
    """Did the client ask for the binary columns (anywhere in its Accept header)?"""
    return bool(accept) and MEDIA_TYPE in accept.lower()  # type: ignore[union-attr]


def _x_column(x: np.ndarray) -> tuple[str, np.ndarray]:
    if x.dtype.kind == "f":
        return "f8", x.astype("<f8", copy=False)
    lo, hi = (int(x.min()), int(x.max())) if len(x) else (0, 0)
    if -(2**31) <= lo and hi < 2**31:
        return "i4", x.astype("<i4")
    if -_EXACT < lo and hi < _EXACT:
        return "f8", x.astype("<f8")
    return "i8", x.astype("<i8", copy=False)


def encode(run: str, generation: int, x: str, series: dict[str, dict[str, Any]]) -> bytes:
    """The binary answer for `series` as Monitor.series(..., arrays=True) gives it."""
    parts: list[bytes | memoryview] = []
    meta: dict[str, Any] = {}
    pos = 0

    def add(arr: np.ndarray) -> int:
        nonlocal pos
        at = pos
        data = np.ascontiguousarray(arr).data
        parts.append(data)
        pos += data.nbytes
        pad = -pos % 8
        if pad:
            parts.append(b"\0" * pad)
            pos += pad
        return at

    for name, s in series.items():
        kind, xs = _x_column(np.asarray(s["x"]))
        ys = np.asarray(s["y"], dtype=np.float64).astype("<f8", copy=False)
        meta[name] = {
            "count": int(s["count"]),
            "decimated": bool(s["decimated"]),
            "n": len(ys),
            "x": {"dtype": kind, "offset": add(xs)},
            "y": {"dtype": "f8", "offset": add(ys)},
        }
    header = orjson.dumps({"run": run, "generation": generation, "x": x, "series": meta})
    header += b" " * (-(len(MAGIC) + _LEN.size + len(header)) % 8)
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *parts])


def decode(body: bytes) -> dict[str, Any]:
    """The answer as the JSON one reads: {"run", "generation", "x", "series": {name: {"x", "y",
    "count", "decimated"}}} with numpy arrays for the columns (for clients and tests)."""
    if body[: len(MAGIC)] != MAGIC:
        raise ValueError("not a binary series answer")
    (n,) = _LEN.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    head = orjson.loads(body[start : start + n])
    base = start + n
    out = {}
    for name, s in head["series"].items():
        cols = {}
        for key in ("x", "y"):
            c = s[key]
            cols[key] = np.frombuffer(
                body, dtype="<" + c["dtype"], count=s["n"], offset=base + c["offset"]
            )
        out[name] = {**cols, "count": s["count"], "decimated": s["decimated"]}
    return {"run": head["run"], "generation": head["generation"], "x": head["x"], "series": out}
