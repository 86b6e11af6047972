"""mudpuppy_callback: the training-side writer of mudpuppy-monitor.

One file, standard library only at import time. Copy it into a training repository as it is, or
install `mudpuppy-monitor` and `import mudpuppy_callback`.

Public surface:

    RunWriter        framework-agnostic writer of a run directory (format v1)
    MonitorCallback  a `transformers.TrainerCallback` that drives a RunWriter (imports
                     transformers only when first used)
    encode_line / decode_line / the constants: the run format, shared with the daemon

The format is specified in docs/run-format.md. Sections of this file:

    1. Format v1: constants, encode and decode of one line
    2. Value conversion (floats, numpy scalars, 0-d tensors)
    3. RunWriter
    4. LoRA norms (torch, imported lazily)
    5. MonitorCallback (transformers, imported lazily)
"""

from __future__ import annotations

import atexit
import json
import math
import os
import platform
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "EVENTS_FILE",
    "KINDS",
    "STEP_KINDS",
    "END_STATUSES",
    "MAX_LINE_BYTES",
    "FormatError",
    "encode_line",
    "decode_line",
    "decode_number",
    "encode_number",
    "RunWriter",
    "MonitorCallback",
    "lora_norms",
]

__version__ = "0.1.0"

# ---------------------------------------------------------------------------------------------
# 1. Format v1
# ---------------------------------------------------------------------------------------------

FORMAT = "mudpuppy-run/1"
FORMAT_VERSION = 1
META_FILE = "meta.json"
EVENTS_FILE = "events.jsonl"

KIND_START = "start"
KIND_METRICS = "metrics"
KIND_EVAL = "eval"
KIND_LORA = "lora"
KIND_PROGRESS = "progress"
KIND_CHECKPOINT = "checkpoint"
KIND_END = "end"
KINDS = frozenset(
    {KIND_START, KIND_METRICS, KIND_EVAL, KIND_LORA, KIND_PROGRESS, KIND_CHECKPOINT, KIND_END}
)
# kinds that must carry an integer `step`
STEP_KINDS = frozenset({KIND_METRICS, KIND_EVAL, KIND_LORA, KIND_PROGRESS, KIND_CHECKPOINT})

STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
END_STATUSES = frozenset({STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED})

# readers skip longer lines; the writer never produces one
MAX_LINE_BYTES = 1 << 20

# Non-finite floats travel as these strings: bare NaN/Infinity tokens are not JSON.
_NONFINITE_TO_STR = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_STR_TO_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class FormatError(ValueError):
    """A line that is not a valid format v1 event."""


def encode_number(x: float) -> float | str:
    """A float as it goes into a line: itself when finite, else "NaN"/"Infinity"/"-Infinity"."""
    if math.isfinite(x):
        return x
    return _NONFINITE_TO_STR[repr(x)]


def decode_number(v: Any) -> float | None:
    """A value read from a line as a float, or None when it is not a number.

    Accepts numbers, the three non-finite strings, and booleans are rejected (JSON `true` is not a
    metric).
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        return _STR_TO_NONFINITE.get(v)
    return None


def _encode_values(values: Mapping[str, float]) -> dict[str, float | str]:
    return {k: encode_number(v) for k, v in values.items()}


def encode_line(event: Mapping[str, Any]) -> bytes:
    """One event as one line of strict JSON, newline included.

    Floats in `values` and in nested LoRA norms must already be floats; non-finite ones are
    written as strings. `allow_nan=False` makes any stray bare NaN an error here, not in a reader.
    """
    out = dict(event)
    if "values" in out:
        out["values"] = _encode_values(out["values"])
    if "layers" in out:
        out["layers"] = {
            name: _encode_values(norms) for name, norms in out["layers"].items()
        }
    text = json.dumps(out, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


def _reject_constant(token: str) -> Any:
    # Readers accept bare NaN/Infinity tokens as well (older or foreign writers).
    return _STR_TO_NONFINITE[token]


def _decode_values(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise FormatError(f"{where} must be an object")
    out: dict[str, float] = {}
    for k, v in raw.items():
        x = decode_number(v)
        if x is not None:
            out[str(k)] = x
    return out


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse one events line into a dict with numbers as floats.

    Raises FormatError for anything that is not a v1 event: invalid UTF-8 or JSON, not an object,
    missing or mistyped `v`/`seq`/`t`/`kind`, an unknown kind, a step-bound kind without an integer
    step. Non-numeric entries inside `values` are dropped (the rest of the line is kept).
    """
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise FormatError("line longer than 1 MiB")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"invalid UTF-8: {exc.reason}") from None
    line = line.strip().lstrip("\ufeff")
    if not line:
        raise FormatError("empty line")
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except RecursionError:
        raise FormatError("nesting too deep") from None
    except ValueError as exc:
        raise FormatError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"expected an object, got {type(obj).__name__}")
    if obj.get("v") != FORMAT_VERSION:
        raise FormatError(f"unsupported version {obj.get('v')!r}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise FormatError(f"unknown kind {kind!r}")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise FormatError("seq must be an integer")
    t = decode_number(obj.get("t"))
    if t is None or not math.isfinite(t):
        raise FormatError("t must be a finite number")
    obj["t"] = t
    if kind in STEP_KINDS or "step" in obj:
        step = obj.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise FormatError(f"{kind} needs a non-negative integer step")
        obj["step"] = step
    if "epoch" in obj:
        obj["epoch"] = decode_number(obj["epoch"])
    if kind in (KIND_METRICS, KIND_EVAL):
        obj["values"] = _decode_values(obj.get("values"), "values")
    elif kind == KIND_LORA:
        layers = obj.get("layers")
        if not isinstance(layers, dict):
            raise FormatError("layers must be an object")
        obj["layers"] = {str(k): _decode_values(v, "layer norms") for k, v in layers.items()}
    elif kind == KIND_END:
        if obj.get("status") not in END_STATUSES:
            raise FormatError(f"unknown end status {obj.get('status')!r}")
    elif kind == KIND_CHECKPOINT:
        if not isinstance(obj.get("path", ""), str):
            raise FormatError("checkpoint path must be a string")
    return obj
