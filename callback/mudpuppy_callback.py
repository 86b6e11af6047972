"""mudpuppy_callback: the training-side writer of mudpuppy-monitor.

One file, standard library only at import time. Copy it into a training repository as it is, or
install `mudpuppy-monitor` and `import mudpuppy_callback`.

Public surface:

    RunWriter        framework-agnostic writer of a run directory (format v1)
    MonitorCallback  a `transformers.TrainerCallback` that drives a RunWriter (imports
                     transformers only when first used)
    lora_norms       norms of every LoRA adapter of a model, one device sync (LoraProbe keeps
                     the module walk for repeated calls)
    LoraNotMeasurable  raised by lora_norms when adapter weights are sharded (FSDP, DTensor)
    MonitorWarning   the warning category for anything the monitor could not record
    encode_line / decode_line / the constants: the run format, shared with the daemon

The format is specified in docs/run-format.md. Sections of this file:

    1. Format v1: constants, encode and decode of one line
    2. Value conversion (floats, numpy scalars, 0-d tensors)
    3. RunWriter
    4. LoRA norms (torch, imported lazily)
    5. MonitorCallback (transformers, imported lazily)
    6. Model shape: what the daemon needs to count training FLOPs per token
    7. Samples: greedy generation during training (torch, imported lazily)
"""

from __future__ import annotations

import atexit
import enum
import errno
import json
import math
import numbers
import os
import platform
import re
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "EVENTS_FILE",
    "KINDS",
    "STEP_KINDS",
    "END_STATUSES",
    "MAX_LINE_BYTES",
    "MAX_STEP",
    "MAX_SAMPLE_TEXT_BYTES",
    "MAX_SAMPLE_ITEMS",
    "FormatError",
    "encode_line",
    "decode_line",
    "decode_number",
    "encode_number",
    "RunWriter",
    "MonitorCallback",
    "lora_norms",
    "LoraProbe",
    "LoraNotMeasurable",
    "MonitorWarning",
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
KIND_SAMPLES = "samples"
KINDS = frozenset(
    {
        KIND_START,
        KIND_METRICS,
        KIND_EVAL,
        KIND_LORA,
        KIND_PROGRESS,
        KIND_CHECKPOINT,
        KIND_END,
        KIND_SAMPLES,
    }
)
# kinds that must carry an integer `step`
STEP_KINDS = frozenset(
    {KIND_METRICS, KIND_EVAL, KIND_LORA, KIND_PROGRESS, KIND_CHECKPOINT, KIND_SAMPLES}
)

STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
END_STATUSES = frozenset({STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED})

# readers skip longer lines; the writer never produces one
MAX_LINE_BYTES = 1 << 20
# steps are stored as int64 by readers: a step is an integer in [0, MAX_STEP)
MAX_STEP = 1 << 63
# `samples` events: each text is cut to this many UTF-8 bytes (less when the whole line would
# pass MAX_LINE_BYTES), and an event carries at most this many items
MAX_SAMPLE_TEXT_BYTES = 8192
MAX_SAMPLE_ITEMS = 64
SAMPLE_TEXT_FIELDS = ("prompt", "completion", "reference")

# Non-finite floats travel as these strings: bare NaN/Infinity tokens are not JSON.
_NONFINITE_TO_STR = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_STR_TO_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class FormatError(ValueError):
    """A line that is not a valid format v1 event."""


def encode_number(x: float) -> float | str:
    """A float as it goes into a line: itself when finite, else "NaN"/"Infinity"/"-Infinity"."""
    if math.isfinite(x):
        return x
    # Compare rather than repr(): numpy scalars print as "np.float64(nan)".
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def decode_number(v: Any) -> float | None:
    """A value read from a line as a float, or None when it is not a number.

    Accepts numbers, the three non-finite strings, and booleans are rejected (JSON `true` is not a
    metric). An integer too large for a float (beyond about 1.8e308) reads as +-infinity: JSON
    allows any integer, and one such value must not make a reader raise.
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        return _int_to_float(v)
    if isinstance(v, str):
        return _STR_TO_NONFINITE.get(v)
    return None


# Integers up to here convert to a float exactly or by rounding; larger ones may overflow.
_FLOAT_INT_MAX = int(sys.float_info.max)


def _int_to_float(v: int) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _encode_values(values: Mapping[str, float]) -> dict[str, float | str]:
    return {k: encode_number(v) for k, v in values.items()}


# Configuration only (no state between calls): json.dumps with these options would build a new
# encoder for every line, a measurable part of a log call.
_LINE_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def encode_line(event: Mapping[str, Any]) -> bytes:
    """One event as one line of strict JSON, newline included.

    Floats in `values` and in nested LoRA norms must already be floats; non-finite ones are
    written as strings. `allow_nan=False` makes any stray bare NaN an error here, not in a reader.
    """
    try:
        # Fast path: all numbers finite, nothing to rewrite (the C encoder does all the work).
        text = _LINE_ENCODER.encode(event)
    except ValueError:
        out = dict(event)
        if "values" in out:
            out["values"] = _encode_values(out["values"])
        if isinstance(out.get("epoch"), float):
            out["epoch"] = encode_number(out["epoch"])
        if "layers" in out:
            out["layers"] = {name: _encode_values(norms) for name, norms in out["layers"].items()}
        text = _LINE_ENCODER.encode(out)
    return text.encode("utf-8") + b"\n"


def _cut_text(text: str, limit: int) -> tuple[str, int | None]:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary, and its full size in
    bytes when it was cut (None when it fits). A lone surrogate (not encodable) becomes "?"."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8"), None
    # "ignore" drops only a character split by the cut: the rest is valid UTF-8
    return data[:limit].decode("utf-8", "ignore"), len(data)


def _encode_sample_items(
    items: Iterable[Mapping[str, Any]], text_limit: int = MAX_SAMPLE_TEXT_BYTES
) -> list[dict[str, Any]]:
    """Sample items as they go into a `samples` line: texts cut to `text_limit` bytes, the cut
    ones named in `truncated` with their full size, a non-finite score as a string.

    Takes items already checked by the writer: `prompt`, `completion` (str), optional
    `reference` (str) and `score` (float).
    """
    out = []
    for item in items:
        rec: dict[str, Any] = {}
        truncated: dict[str, int] = {}
        for field in SAMPLE_TEXT_FIELDS:
            text = item.get(field)
            if text is None:
                continue
            rec[field], full = _cut_text(text, text_limit)
            if full is not None:
                truncated[field] = full
        score = item.get("score")
        if score is not None:
            rec["score"] = encode_number(score)
        if truncated:
            rec["truncated"] = truncated
        out.append(rec)
    return out


def _decode_optional_number(obj: dict[str, Any], key: str) -> None:
    """obj[key] as a float, or removed when it is there but not a number."""
    if key in obj:
        x = decode_number(obj[key])
        if x is None:
            del obj[key]
        else:
            obj[key] = x


def _decode_sample_items(raw: Any) -> list[dict[str, Any]]:
    """The items of a `samples` line; an item without string `prompt` and `completion` is
    dropped, a mistyped optional field is dropped, fields this reader does not know are kept."""
    if not isinstance(raw, list):
        raise FormatError("items must be an array")
    out = []
    for item in raw:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("prompt"), str)
            and isinstance(item.get("completion"), str)
        ):
            continue
        if "reference" in item and not isinstance(item["reference"], str):
            del item["reference"]
        _decode_optional_number(item, "score")
        if "truncated" in item:
            cut = item["truncated"]
            if isinstance(cut, dict):
                cut = {
                    k: v
                    for k, v in cut.items()
                    if k in SAMPLE_TEXT_FIELDS and type(v) is int and v >= 0
                }
            if cut and isinstance(cut, dict):
                item["truncated"] = cut
            else:
                del item["truncated"]
        out.append(item)
    return out


def _parse_constant(token: str) -> Any:
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
    step. Non-numeric entries inside `values` are dropped (the rest of the line is kept), and so
    are `samples` items without string `prompt` and `completion`.
    """
    if isinstance(line, str):
        if len(line) > MAX_LINE_BYTES:
            raise FormatError("line longer than 1 MiB")
    elif isinstance(line, bytes):
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
        obj = json.loads(line, parse_constant=_parse_constant)
    except RecursionError:
        raise FormatError("nesting too deep") from None
    except ValueError as exc:
        raise FormatError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"expected an object, got {type(obj).__name__}")
    v = obj.get("v")
    # `True == 1` in Python: check the type, not only the value.
    if not isinstance(v, int) or isinstance(v, bool) or v != FORMAT_VERSION:
        raise FormatError(f"unsupported version {v!r}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise FormatError(f"unknown kind {kind!r}")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FormatError("seq must be a non-negative integer")
    t = decode_number(obj.get("t"))
    if t is None or not math.isfinite(t):
        raise FormatError("t must be a finite number")
    obj["t"] = t
    if kind in STEP_KINDS or "step" in obj:
        step = obj.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        # Readers keep steps as int64: a larger one could not be stored.
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < MAX_STEP:
            raise FormatError(f"{kind} needs a non-negative integer step below 2**63")
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
    elif kind == KIND_SAMPLES:
        obj["items"] = _decode_sample_items(obj.get("items"))
        _decode_optional_number(obj, "took_s")
    return obj


# ---------------------------------------------------------------------------------------------
# 2. Value conversion
# ---------------------------------------------------------------------------------------------


class MonitorWarning(UserWarning):
    """Something the monitor could not record. Training always goes on."""


def _warn(message: str) -> None:
    warnings.warn(message, MonitorWarning, stacklevel=3)


Number = float | int


def _convert_values(values: Mapping[str, Any]) -> tuple[dict[str, Number], list[str]]:
    """Metric values as Python numbers, plus the keys that were not numbers.

    Accepts Python floats and ints, numpy scalars and 0-d arrays, and one-element torch tensors.
    Tensors are gathered and copied to the host together: one device sync for the whole dict, not
    one per value (a `.item()` per value would stall the GPU queue once per metric).
    """
    out: dict[str, Any] = {}
    dropped: list[str] = []
    tensors: list[tuple[str, Any]] = []
    # Only look at libraries the program already imported: an unimported library cannot have
    # produced a value, and importing torch here would cost seconds.
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    for key, v in values.items():
        key = str(key)
        tv = type(v)
        if tv is float:  # the common case first
            out[key] = v
        elif tv is int:
            # Ints stay ints (exact token counts); one no float can hold is written as +-inf,
            # which is what a reader would make of it anyway.
            out[key] = v if -_FLOAT_INT_MAX <= v <= _FLOAT_INT_MAX else _int_to_float(v)
        elif isinstance(v, bool) or v is None or isinstance(v, (str, bytes)):
            dropped.append(key)
        elif torch is not None and isinstance(v, torch.Tensor):
            if v.numel() == 1 and (v.is_floating_point() or _is_int_tensor(torch, v)):
                out[key] = None  # keeps the key order; filled below
                tensors.append((key, v))
            else:
                dropped.append(key)
        elif np is not None and isinstance(v, (np.generic, np.ndarray)):
            if v.size == 1 and v.dtype.kind in "fiu":
                out[key] = v.reshape(()).item()
            else:
                dropped.append(key)
        elif isinstance(v, numbers.Integral):
            i = int(v)
            out[key] = i if -_FLOAT_INT_MAX <= i <= _FLOAT_INT_MAX else _int_to_float(i)
        elif isinstance(v, numbers.Real):
            out[key] = float(v)
        else:
            dropped.append(key)
    if tensors:
        for (key, _), x in zip(
            tensors, _tensors_to_numbers(torch, [t for _, t in tensors]), strict=True
        ):
            out[key] = x
    return out, dropped


def _is_int_tensor(torch: Any, t: Any) -> bool:
    return t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _tensors_to_numbers(torch: Any, tensors: list[Any]) -> list[Number]:
    """One-element tensors as Python numbers with at most one device-to-host sync."""
    by_device: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    stacks = []
    with torch.no_grad():
        for device, idxs in by_device.items():
            parts = [tensors[i].detach().reshape(()) for i in idxs]
            if len({p.dtype for p in parts}) > 1:
                # Mixed dtypes cannot be stacked; float64 holds ints and floats exactly enough.
                parts = [p.to(_wide_dtype(torch, device)) for p in parts]
            stacks.append(torch.stack(parts))
        lists = _host_lists(torch, stacks)
    result: list[Any] = [None] * len(tensors)
    for idxs, values in zip(by_device.values(), lists, strict=True):
        for i, x in zip(idxs, values, strict=True):
            result[i] = x
    return result


def _wide_dtype(torch: Any, device: Any) -> Any:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _host_lists(torch: Any, flats: list[Any]) -> list[list[Number]]:
    """1-D tensors, on any devices, as Python lists with at most one device-to-host sync.

    CPU tensors are read directly (no sync); the others are concatenated on the first one's
    device and copied with a single `.tolist()`, then split by length (known on the host).
    """
    out: list[list[Number]] = [[] for _ in flats]
    on_device = []
    for i, f in enumerate(flats):
        if f.device.type == "cpu":
            out[i] = f.tolist()
        else:
            on_device.append(i)
    if not on_device:
        return out
    parts = [flats[i] for i in on_device]
    if len(parts) == 1:
        joined = parts[0]
    else:
        first = parts[0].device
        if len({p.dtype for p in parts}) > 1:
            wide = _wide_dtype(torch, first)
            parts = [p.to(dtype=wide) for p in parts]
        joined = torch.cat([p.to(device=first) for p in parts])
    values = joined.tolist()  # the one sync
    pos = 0
    for i in on_device:
        n = flats[i].numel()
        out[i] = values[pos : pos + n]
        pos += n
    return out


def _json_safe(obj: Any, depth: int = 0) -> Any:
    """A config value as strict JSON: containers copied, odd objects as strings, NaN as "NaN"."""
    if depth > 20:
        return str(obj)
    if isinstance(obj, enum.Enum):  # IntervalStrategy, PeftType, ... (often also str)
        return _json_safe(obj.value, depth + 1)
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return encode_number(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted((_json_safe(v, depth + 1) for v in obj), key=str)
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in obj]
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return encode_number(float(obj))
    return str(obj)


# ---------------------------------------------------------------------------------------------
# 3. RunWriter
# ---------------------------------------------------------------------------------------------

_MAX_ERROR_CHARS = 4000
# `samples` lines: room for the fields around `items`, and the floor of the per-text limit
_ENVELOPE_BYTES = 512
_MIN_SAMPLE_TEXT_BYTES = 256
_NLINK_CHECK_EVERY_S = 1.0
_TAIL_BYTES = 1 << 16


# C0 and C1 controls, DEL and the Unicode bidi controls: in a run name they split it (a newline)
# or disguise it in every view (U+202E shows `uni-\u202etxt.exe` as `uni-exe.txt`).
_UNSAFE_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _check_name(name: str) -> str:
    cleaned = _UNSAFE_NAME_CHARS.sub("_", name)
    if cleaned != name:
        _warn(f"mudpuppy: the run name {name!r} holds control characters; using {cleaned!r}")
        name = cleaned
    absolute = os.path.isabs(name) or name.startswith(("/", "\\"))
    name = name.replace("\\", "/").rstrip("/")
    parts = name.split("/")
    if absolute or not name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid run name {name!r}: use a relative path without '..'")
    return name


def _default_name(clock: Any) -> str:
    return time.strftime("run-%Y%m%d-%H%M%S", time.localtime(clock()))


def _claim_dir(root: str, name: str, resume: bool) -> str:
    """Create and return the run directory; a taken name gets `-2`, `-3`, ... unless resuming.

    `os.mkdir` either creates the directory or fails, so two processes starting at the same
    moment cannot claim the same name.
    """
    base = os.path.join(root, name)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    if resume:
        os.makedirs(base, exist_ok=True)
        return base
    for i in range(1, 100_000):
        candidate = base if i == 1 else f"{base}-{i}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free run directory name", base)


def _read_events_tail(path: str) -> tuple[int, int | None]:
    """(next seq, last step) of an existing events file, read from its end.

    Starts with the last 64 KiB and widens the window (up to one whole line of MAX_LINE_BYTES)
    until a complete line decodes, so a long last line (a big `lora` event) still tells the seq
    to continue from.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0, None
    with f:
        size = f.seek(0, os.SEEK_END)
        window = _TAIL_BYTES
        while True:
            start = max(0, size - window)
            f.seek(start)
            pieces = f.read(size - start).split(b"\n")
            if start > 0:
                pieces = pieces[1:]  # the window may begin inside a line
            next_seq, last_step = _scan_tail(pieces)
            done = next_seq is not None and last_step is not None
            if done or start == 0 or window > MAX_LINE_BYTES:
                return (next_seq or 0), last_step
            window = min(window * 4, MAX_LINE_BYTES + 1)  # a whole line and the newline before


def _scan_tail(pieces: list[bytes]) -> tuple[int | None, int | None]:
    next_seq: int | None = None
    for raw in reversed(pieces):
        try:
            event = decode_line(raw)
        except FormatError:
            continue
        if next_seq is None:
            next_seq = event["seq"] + 1
        if "step" in event:
            return next_seq, event["step"]
    return next_seq, None


def _check_step(step: Any) -> int:
    # Refused here rather than written as a line every reader would refuse.
    s = int(step)
    if not 0 <= s < MAX_STEP:
        raise ValueError(f"step must be an integer in [0, 2**63), got {s}")
    return s


def _versions() -> dict[str, str]:
    # Only what is already imported: looking up installed versions would import or scan packages.
    out = {"python": platform.python_version(), "mudpuppy_callback": __version__}
    for lib in ("torch", "transformers", "peft", "accelerate", "trl", "bitsandbytes"):
        mod = sys.modules.get(lib)
        version = getattr(mod, "__version__", None) if mod is not None else None
        if isinstance(version, str):
            out[lib] = version
    return out


def _cuda_uuids(initialize: bool, indices: Iterable[int] | None = None) -> list[str]:
    """UUIDs ("GPU-...", as NVML spells them) of CUDA devices this process sees.

    NVML numbers devices ignoring CUDA_VISIBLE_DEVICES, so the daemon matches runs by UUID.
    `indices` limits the answer to the devices in use (default: every visible one).
    With initialize=False nothing is asked unless CUDA is already initialized here.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available() or (not initialize and not torch.cuda.is_initialized()):
            return []
        out = []
        wanted = range(torch.cuda.device_count()) if indices is None else sorted(set(indices))
        for i in wanted:
            uuid = str(torch.cuda.get_device_properties(i).uuid)
            out.append(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        return out
    except Exception:
        return []


def _cuda_indices_in_use(device: Any, model: Any) -> set[int]:
    """The CUDA devices a Trainer uses: its own device and wherever the model's weights live.

    Recording only these (not every visible device) keeps a single-process run on a shared
    multi-GPU box from being attributed to its neighbours' GPUs.
    """
    used: set[int] = set()
    if getattr(device, "type", None) == "cuda":
        used.add(device.index if device.index is not None else 0)
    if model is not None and hasattr(model, "parameters"):
        for p in model.parameters():  # once per run; device_map="auto" spreads a model out
            if p.device.type == "cuda":
                used.add(p.device.index if p.device.index is not None else 0)
    return used


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:_MAX_ERROR_CHARS]


def _write_all(fd: int, data: bytes) -> None:
    # One write() for the whole line; the loop only runs when the kernel took part of it
    # (disk nearly full), and the next line then starts on a fresh line (see _reopen).
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            view = view[n:]


def _never_raises(method: Any) -> Any:
    """A public RunWriter method that reports unexpected errors once instead of raising them."""

    def wrapper(self: RunWriter, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(method(self, *args, **kwargs))
        except Exception as exc:
            self._warn_once(
                f"error:{method.__name__}",
                f"mudpuppy: {method.__name__} failed ({_error_text(exc)}); nothing recorded",
            )
            return False

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class RunWriter:
    """Writes one run directory in format v1 (docs/run-format.md). Standard library only.

    Never raises into the training loop once constructed: an OSError while writing is reported
    once as a MonitorWarning, the line is dropped, and writing is retried at most every
    `retry_every_s` seconds (or stops for good when the run directory was deleted).

    Only world rank 0 writes: with `rank` None the RANK environment variable decides, and any
    other rank gets an inert writer (every method is a no-op and `dir` is None).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "runs",
        name: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
        resumed_from: int | None = None,
        world_size: int | None = None,
        max_steps: int | None = None,
        num_train_epochs: float | None = None,
        gpus: Iterable[str] | None = None,
        meta: Mapping[str, Any] | None = None,
        rank: int | None = None,
        progress_every_s: float = 2.0,
        retry_every_s: float = 5.0,
        clock: Any = time.time,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._seq = 0
        self._last_step: int | None = None
        self._last_write_t = -math.inf
        self._progress_every_s = progress_every_s
        self._retry_every_s = retry_every_s
        self._retry_at = -math.inf
        self._io_warned = False
        self._deleted = False
        self._nlink_checked_t = -math.inf
        self._dropped = 0
        self._warned_keys: set[str] = set()
        self._closed = False
        self._atexit: Any = None
        self._pid = os.getpid()
        self.meta: dict[str, Any] = {}
        self.dir: Path | None = None
        self.name: str | None = None
        self.run_id: str | None = None
        if rank is None:
            rank = _env_int("RANK", 0)
        if rank != 0:
            self._closed = True
            return
        self.name = _check_name(name) if name else _default_name(clock)
        # The writer never breaks training: from here on an OSError becomes one warning.
        try:
            path = _claim_dir(os.fspath(root), self.name, resume)
        except OSError as exc:
            self._io_failed(exc)
            self._closed = True
            return
        self.dir = Path(path)
        self.name = os.path.relpath(path, os.fspath(root)).replace(os.sep, "/")
        self._events_path = os.path.join(path, EVENTS_FILE)
        previous_meta: dict[str, Any] = {}
        if resume:
            self._seq, last_step = _read_events_tail(self._events_path)
            if resumed_from is None:
                resumed_from = last_step
            previous_meta = _read_json(os.path.join(path, META_FILE))
        self.run_id = str(previous_meta.get("run_id") or os.urandom(16).hex())
        ws = world_size if world_size is not None else _env_int("WORLD_SIZE", 1)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "run_id": self.run_id,
            "name": self.name,
            "created": previous_meta.get("created", clock()),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": list(sys.argv),
            "config": dict(config or {}),
            "versions": _versions(),
            "world_size": ws,
            "max_steps": max_steps,
            "num_train_epochs": num_train_epochs,
            "gpus": list(gpus) if gpus is not None else _cuda_uuids(initialize=False),
        }
        if meta:
            doc.update(meta)
        self.meta = _json_safe(doc)
        self._write_meta()
        self._open()
        start: dict[str, Any] = {"run_id": self.run_id}
        if resumed_from is not None:
            start["resumed_from"] = resumed_from
        self._emit(KIND_START, start)
        # An unclosed writer at interpreter exit ends its run as interrupted (or failed, when
        # the program died of an exception). A weak reference keeps atexit from pinning it.
        ref = weakref.ref(self)

        def _close_at_exit() -> None:
            writer = ref()
            if writer is not None:
                writer._close_at_exit()

        self._atexit = _close_at_exit
        atexit.register(_close_at_exit)

    # -- public API ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Lines that could not be written (I/O errors)."""
        return self._dropped

    @_never_raises
    def log(self, step: int, values: Mapping[str, Any], *, epoch: float | None = None) -> bool:
        """A `metrics` event. Returns whether a line was written."""
        fields = self._values_fields(step, values, epoch, eval_prefix=False)
        return fields is not None and self._emit(KIND_METRICS, fields)

    @_never_raises
    def log_eval(self, step: int, values: Mapping[str, Any], *, epoch: float | None = None) -> bool:
        """An `eval` event. Keys without the `eval_` prefix get it (`loss` -> `eval_loss`)."""
        fields = self._values_fields(step, values, epoch, eval_prefix=True)
        return fields is not None and self._emit(KIND_EVAL, fields)

    @_never_raises
    def log_lora(self, step: int, layers: Mapping[str, Mapping[str, Any]]) -> bool:
        """A `lora` event: {module path: {"A": norm, "B": norm, "update": norm, ...}}."""
        if self._closed:
            return False
        out = {}
        for path, norms in layers.items():
            try:
                converted, dropped = _convert_values(norms)
            except Exception as exc:
                self._warn_once("convert", f"mudpuppy: cannot read LoRA norms ({_error_text(exc)})")
                return False
            self._warn_dropped(dropped)
            if converted:
                out[str(path)] = converted
        if not out:
            return False
        return self._emit(KIND_LORA, {"step": _check_step(step), "layers": out})

    @_never_raises
    def progress(self, step: int) -> bool:
        """A `progress` event, unless any event was written less than 2 s ago."""
        if self._closed:
            return False
        now = self._clock()
        if now < self._last_write_t:  # the wall clock went back: start over
            self._last_write_t = now
        if now - self._last_write_t < self._progress_every_s:
            return False
        return self._emit(KIND_PROGRESS, {"step": _check_step(step)})

    @_never_raises
    def checkpoint(self, step: int, path: str | os.PathLike[str]) -> bool:
        return self._emit(KIND_CHECKPOINT, {"step": _check_step(step), "path": os.fspath(path)})

    @_never_raises
    def log_samples(
        self, step: int, items: Iterable[Mapping[str, Any]], took_s: float | None = None
    ) -> bool:
        """A `samples` event: text generated at `step`, as items {"prompt": str, "completion": str,
        optional "reference": str and "score": number}; `took_s` is how long generating took.

        Each text is cut to MAX_SAMPLE_TEXT_BYTES (8 KiB) of UTF-8 and the cut is recorded in the
        item's `truncated` ({field: full size in bytes}); when the whole line would still pass
        1 MiB the limit is halved until it fits. At most MAX_SAMPLE_ITEMS items are written.
        """
        if self._closed:
            return False
        checked = self._sample_items(items)
        if not checked:
            return False
        fields: dict[str, Any] = {"step": _check_step(step)}
        limit = MAX_SAMPLE_TEXT_BYTES
        while True:
            encoded = _encode_sample_items(checked, limit)
            if limit <= _MIN_SAMPLE_TEXT_BYTES:
                break  # 64 items x 3 texts of 256 bytes fit in a line even fully escaped
            if len(encode_line({"items": encoded})) <= MAX_LINE_BYTES - _ENVELOPE_BYTES:
                break
            limit //= 2
        fields["items"] = encoded
        if took_s is not None:
            took, dropped = _convert_values({"took_s": took_s})
            if dropped:
                self._warn_dropped(dropped)
            else:
                fields["took_s"] = encode_number(float(took["took_s"]))
        return self._emit(KIND_SAMPLES, fields)

    def close(
        self,
        status: str = STATUS_COMPLETED,
        *,
        error: str | BaseException | None = None,
        step: int | None = None,
    ) -> None:
        """Write `end` and release the file. A second call does nothing."""
        with self._lock:
            if self._closed:
                return
            if status not in END_STATUSES:
                raise ValueError(f"status must be one of {sorted(END_STATUSES)}, got {status!r}")
            fields: dict[str, Any] = {"status": status}
            step = step if step is not None else self._last_step
            if step is not None and 0 <= int(step) < MAX_STEP:  # `end` matters more than its step
                fields["step"] = int(step)
            if error is not None:
                fields["error"] = (
                    _error_text(error)
                    if isinstance(error, BaseException)
                    else str(error)[:_MAX_ERROR_CHARS]
                )
            if self._dropped:
                fields["dropped"] = self._dropped
            self._emit(KIND_END, fields)
            self._closed = True
            self._close_fd()
            if self._atexit is not None:
                atexit.unregister(self._atexit)
                self._atexit = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close(STATUS_COMPLETED)
        elif isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            self.close(STATUS_INTERRUPTED)
        else:
            self.close(STATUS_FAILED, error=exc)

    def __del__(self) -> None:
        # Dropped without close(): the run did not complete as far as anyone can tell.
        try:
            if not self._closed and os.getpid() == self._pid:
                self.close(STATUS_INTERRUPTED)
        except Exception:
            pass

    # -- internals -------------------------------------------------------------------------

    def _close_at_exit(self) -> None:
        if os.getpid() != self._pid:
            return  # a forked child exiting: the run belongs to the parent
        exc = getattr(sys, "last_value", None)  # set when the program died of an exception
        if isinstance(exc, Exception):
            self.close(STATUS_FAILED, error=exc)
        else:
            self.close(STATUS_INTERRUPTED)

    def _values_fields(
        self, step: int, values: Mapping[str, Any], epoch: Any, eval_prefix: bool
    ) -> dict[str, Any] | None:
        if self._closed:
            return None
        try:
            converted, dropped = _convert_values(values)
        except Exception as exc:  # e.g. a tensor on a device that cannot be read
            self._warn_once("convert", f"mudpuppy: cannot read metric values ({_error_text(exc)})")
            return None
        if dropped:
            self._warn_dropped(dropped)
        if eval_prefix:
            converted = {
                (k if k.startswith("eval_") else f"eval_{k}"): v for k, v in converted.items()
            }
        if not converted:
            return None
        if type(step) is not int or not 0 <= step < MAX_STEP:
            step = _check_step(step)
        fields: dict[str, Any] = {"step": step}
        if type(epoch) is float:  # what the Trainer logs: no conversion needed
            fields["epoch"] = epoch
        elif epoch is not None:
            e, _ = _convert_values({"epoch": epoch})
            if "epoch" in e:
                fields["epoch"] = float(e["epoch"])
        fields["values"] = converted
        return fields

    def _sample_items(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The items to write, checked: one warning for items without string texts, one for a
        score that is not a number, one when there are more than MAX_SAMPLE_ITEMS."""
        out: list[dict[str, Any]] = []
        bad = 0
        for i, item in enumerate(items):
            if i == MAX_SAMPLE_ITEMS:
                self._warn_once(
                    "samples:many",
                    f"mudpuppy: more than {MAX_SAMPLE_ITEMS} samples in one event; "
                    f"the first {MAX_SAMPLE_ITEMS} are recorded",
                )
                break
            prompt = completion = reference = None
            if isinstance(item, Mapping):
                prompt, completion, reference = (item.get(f) for f in SAMPLE_TEXT_FIELDS)
            if not (
                isinstance(prompt, str)
                and isinstance(completion, str)
                and (reference is None or isinstance(reference, str))
            ):
                bad += 1
                continue
            rec: dict[str, Any] = {"prompt": prompt, "completion": completion}
            if reference is not None:
                rec["reference"] = reference
            if item.get("score") is not None:
                score, dropped = _convert_values({"score": item["score"]})
                if dropped:
                    self._warn_dropped(dropped)
                else:
                    rec["score"] = float(score["score"])
            out.append(rec)
        if bad:
            self._warn_once(
                "samples:item",
                "mudpuppy: a sample needs a string prompt and completion (and reference, if "
                "any); such items are not recorded",
            )
        return out

    def _warn_dropped(self, keys: list[str]) -> None:
        for key in keys:
            if key not in self._warned_keys:
                self._warned_keys.add(key)
                _warn(f"mudpuppy: value of {key!r} is not a number; it is not recorded")

    def _emit(self, kind: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            if self._closed:
                return False
            now = self._clock()
            event = {"v": FORMAT_VERSION, "seq": self._seq, "t": now, "kind": kind, **fields}
            try:
                line = encode_line(event)
            except (TypeError, ValueError) as exc:
                self._warn_once(f"encode:{kind}", f"mudpuppy: cannot encode a {kind} event: {exc}")
                return False
            if len(line) > MAX_LINE_BYTES:
                self._warn_once(f"size:{kind}", f"mudpuppy: {kind} event over 1 MiB; not written")
                return False
            if self._fd is None and not self._reopen(now):
                self._dropped += 1
                return False
            assert self._fd is not None
            try:
                # A deleted file still accepts writes through an open descriptor; the link count
                # tells. The run is gone on purpose: stop rather than recreate it. One fstat a
                # second (and before `end`) is enough to stop within a second of the deletion.
                since = now - self._nlink_checked_t
                if kind == KIND_END or not 0 <= since < _NLINK_CHECK_EVERY_S:
                    self._nlink_checked_t = now
                    if os.fstat(self._fd).st_nlink == 0:
                        self._deleted = True
                        raise FileNotFoundError(
                            errno.ENOENT, "run directory or events file deleted"
                        )
                _write_all(self._fd, line)
            except OSError as exc:
                self._dropped += 1
                self._io_failed(exc)
                self._close_fd()
                self._retry_at = now + self._retry_every_s
                return False
            self._seq += 1
            self._last_write_t = now
            if "step" in fields:
                self._last_step = fields["step"]
            return True

    def _open(self) -> None:
        # O_RDWR, not O_WRONLY: the partial-line guard reads the last byte through this fd.
        try:
            self._fd = os.open(self._events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._guard_partial_line()
        except OSError as exc:
            self._close_fd()
            self._io_failed(exc)
            self._retry_at = self._clock() + self._retry_every_s

    def _reopen(self, now: float) -> bool:
        if self._deleted or now < self._retry_at or self.dir is None:
            return False
        try:
            # No O_CREAT once the directory is gone: a deleted run stays deleted.
            flags = os.O_RDWR | os.O_APPEND
            if self.dir.is_dir():
                flags |= os.O_CREAT
            self._fd = os.open(self._events_path, flags, 0o644)
            self._guard_partial_line()
            return True
        except OSError:
            self._close_fd()
            self._retry_at = now + self._retry_every_s
            return False

    def _guard_partial_line(self) -> None:
        # If the file ends inside a line (a crash or a full disk cut it), finish that line so the
        # next event is not glued to it; readers count and skip the broken one.
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            _write_all(self._fd, b"\n")

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _write_meta(self) -> None:
        assert self.dir is not None
        final = os.path.join(self.dir, META_FILE)
        tmp = os.path.join(self.dir, f".{META_FILE}.{os.getpid()}.tmp")
        try:
            data = json.dumps(self.meta, indent=2, allow_nan=False, ensure_ascii=False)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data + "\n")
            os.replace(tmp, final)  # readers see the old or the new file, never half of one
        except (OSError, ValueError) as exc:
            self._io_failed(exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _io_failed(self, exc: BaseException) -> None:
        if self._deleted:
            self._warn_once(
                "deleted",
                f"mudpuppy: the run directory was deleted ({exc}); training continues, "
                "and this run records nothing more",
            )
            return
        if not self._io_warned:
            self._io_warned = True
            _warn(
                f"mudpuppy: cannot write the run directory ({exc}); "
                "training continues, events are dropped until writing works again"
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned_keys:
            self._warned_keys.add(key)
            _warn(message)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------
# 4. LoRA norms (torch, imported only when used)
# ---------------------------------------------------------------------------------------------

DEFAULT_ADAPTER = "default"


# Attribute names that wrappers put between a module and its children: FSDP's and activation
# checkpointing's wrapper modules, and torch.compile's OptimizedModule. Not part of the user's
# module path.
_WRAPPER_SEGMENTS = frozenset({"_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"})
_OUTER_WRAPPERS = {
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "FullyShardedDataParallel": "module",
    "OptimizedModule": "_orig_mod",
}


def _unwrap_model(model: Any) -> Any:
    """The model whose module names are the user's: without DDP's `module.`, FSDP's and
    torch.compile's wrappers, and PEFT's wrapper."""
    for _ in range(16):  # wrappers nest (a compiled DDP model); no loop forever on odd ones
        attr = _OUTER_WRAPPERS.get(type(model).__name__)
        inner = getattr(model, attr, None) if attr else None
        if inner is None:
            break
        model = inner
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        return get_base()
    return model


def _module_path(name: str) -> str:
    """A module name without wrapper segments: `model.layers.0._checkpoint_wrapped_module.mlp`
    is `model.layers.0.mlp`, as the user's model names it."""
    if "_wrapped_module" not in name and "_orig_mod" not in name:
        return name
    return ".".join(p for p in name.split(".") if p not in _WRAPPER_SEGMENTS)


class LoraNotMeasurable(RuntimeError):
    """The adapter weights in this process are not whole (sharded), so their norms would be
    wrong: a DTensor (FSDP2, tensor parallel) or an empty local shard (FSDP)."""


class _LoraEntry:
    __slots__ = ("path", "adapter", "module", "embedding", "prefix")

    def __init__(self, path: str, adapter: str, module: Any, embedding: bool, prefix: str):
        self.path = path
        self.adapter = adapter
        self.module = module
        self.embedding = embedding
        self.prefix = prefix

    def tensors(self) -> tuple[Any, Any, Any]:
        """(A as r x fan_in, B as fan_out x r, DoRA magnitude or None), detached."""
        m = self.module
        if self.embedding:
            a = m.lora_embedding_A[self.adapter]
            b = m.lora_embedding_B[self.adapter]
        else:
            a = m.lora_A[self.adapter].weight
            b = m.lora_B[self.adapter].weight
        mag = None
        mags = getattr(m, "lora_magnitude_vector", None)
        if mags is not None and self.adapter in mags:
            mag = mags[self.adapter]
            mag = getattr(mag, "weight", mag).detach()  # peft >= 0.12 wraps it in a module
        for t in (a, b, mag):
            if t is None:
                continue
            # By class name: importing torch.distributed to check would cost startup time.
            if type(t).__name__ == "DTensor":
                raise LoraNotMeasurable(f"the LoRA weights of {self.path} are sharded (DTensor)")
            if t.numel() == 0:
                raise LoraNotMeasurable(f"a LoRA weight of {self.path} is empty in this process")
        a = a.detach()
        b = b.detach()
        a = a.reshape(a.shape[0], -1)  # conv kernels: (r, in, k, k) -> (r, in*k*k)
        b = b.reshape(b.shape[0], -1)
        return a, b, mag


class LoraProbe:
    """The adapted modules of a model, found once; `norms()` measures them all in one pass.

    Keys per module (see docs/run-format.md): `A`, `B`, `update` (the Frobenius norm of the
    effective weight change `scale * B @ A`) and, for DoRA, `magnitude`, for the adapter named
    "default" or for the only adapter of the model; `<adapter>/A`, ... for the others.
    """

    def __init__(self, model: Any) -> None:
        base = _unwrap_model(model)
        found: list[tuple[str, str, Any, bool]] = []
        for path, module in base.named_modules():
            scaling = getattr(module, "scaling", None)
            if not isinstance(scaling, dict):
                continue
            for attr, embedding in (("lora_A", False), ("lora_embedding_A", True)):
                container = getattr(module, attr, None)
                if container is None or not hasattr(container, "keys"):
                    continue
                for adapter in container.keys():
                    if adapter in scaling:
                        found.append((_module_path(path), adapter, module, embedding))
        adapters = {adapter for _, adapter, _, _ in found}
        single = len(adapters) == 1
        self.entries = [
            _LoraEntry(
                path,
                adapter,
                module,
                embedding,
                "" if single or adapter == DEFAULT_ADAPTER else f"{adapter}/",
            )
            for path, adapter, module, embedding in found
        ]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def norms(self) -> dict[str, dict[str, float]]:
        if not self.entries:
            return {}
        import torch

        # Group by everything that must match to stack: device, dtypes and shapes. Each group
        # is a few batched kernels; nothing is copied to the host until the very end.
        groups: dict[tuple[Any, ...], list[tuple[_LoraEntry, Any, Any, Any]]] = {}
        for e in self.entries:
            a, b, mag = e.tensors()
            key = (a.device, a.dtype, b.dtype, tuple(a.shape), tuple(b.shape))
            groups.setdefault(key, []).append((e, a, b, mag))
        flats: list[tuple[list[tuple[_LoraEntry, Any, Any, Any]], bool, Any]] = []
        with torch.no_grad():
            for (device, _, _, a_shape, b_shape), items in groups.items():
                as_ = [a for _, a, _, _ in items]
                bs = [b for _, _, b, _ in items]
                mags = [m for *_, m in items if m is not None]
                # every plain norm of the group in one call: A's, then B's, then magnitudes
                parts = [_foreach_norm(torch, as_ + bs + mags)]
                has_update = a_shape[0] == b_shape[1]
                if has_update:
                    parts.append(_update_sq_norms(torch, device, as_, bs))
                flats.append((items, has_update, torch.cat(parts)))
            host = _host_lists(torch, [f for _, _, f in flats])
        out: dict[str, dict[str, float]] = {}
        for (items, has_update, _), vals in zip(flats, host, strict=True):
            n = len(items)
            n_mags = sum(1 for *_, mag in items if mag is not None)
            mag_norms = iter(vals[2 * n : 2 * n + n_mags])
            upd_sq = vals[2 * n + n_mags :] if has_update else []
            for i, (e, _, _, mag) in enumerate(items):
                rec = out.setdefault(e.path, {})
                p = e.prefix
                rec[p + "A"] = vals[i]
                rec[p + "B"] = vals[n + i]
                if has_update:
                    scale = abs(float(e.module.scaling[e.adapter]))
                    rec[p + "update"] = scale * math.sqrt(max(upd_sq[i], 0.0))
                if mag is not None:
                    rec[p + "magnitude"] = next(mag_norms)
        return out


def _update_sq_norms(torch: Any, device: Any, as_: list[Any], bs: list[Any]) -> Any:
    """||B_i A_i||_F^2 for same-shaped pairs, as one float32 vector (no host copy).

    ||B A||_F^2 = trace((B^T B)(A A^T)): two r x r Gram matrices instead of the fan_out x fan_in
    product. Both are symmetric, so the trace of their product is the sum of their elementwise
    product. It is also more accurate in float32 than the norm of the dense product.
    """
    group_elements = len(as_) * (as_[0].numel() + bs[0].numel())  # one shape per group
    if device.type == "cpu" and group_elements > 1 << 20:
        # Large adapters on the CPU: stacking would copy the whole set, and there are no kernel
        # launches to save. (Small ones are stacked below: fewer operator calls.)
        out = []
        for a, b in zip(as_, bs, strict=True):
            a, b = a.float(), b.float()
            out.append(((a @ a.T) * (b.T @ b)).sum())
        return torch.stack(out)
    # A few batched kernels per shape instead of several per module.
    a3 = torch.stack(as_).float()
    b3 = torch.stack(bs).float()
    gram_a = torch.bmm(a3, a3.transpose(1, 2))
    gram_b = torch.bmm(b3.transpose(1, 2), b3)
    return (gram_a * gram_b).sum(dim=(1, 2))


def _foreach_norm(torch: Any, tensors: list[Any]) -> Any:
    """L2 norms of many tensors as one float32 vector, in one fused kernel where available."""
    try:
        # dtype=float32 keeps bf16/fp16 norms from being rounded to 3 significant digits
        norms = torch._foreach_norm(tensors, 2, dtype=torch.float32)
    except (AttributeError, TypeError, RuntimeError):
        norms = [t.float().norm() for t in tensors]
    return torch.stack(list(norms)).float()


def lora_norms(model: Any) -> dict[str, dict[str, float]]:
    """Norms of every LoRA adapter of `model` ({} when it has none), with one device sync.

    Returns {module path: {"A": ..., "B": ..., "update": ..., ["magnitude": ...]}}; the module
    path is the base model's module name (`model.layers.0.self_attn.q_proj`). To measure the same
    model repeatedly, keep a `LoraProbe(model)` and call its `norms()`.
    """
    return LoraProbe(model).norms()


# ---------------------------------------------------------------------------------------------
# 5. MonitorCallback (transformers, imported only when the name is first used)
# ---------------------------------------------------------------------------------------------


def _guarded(hook: Any) -> Any:
    """A hook that never raises into the Trainer: a failure is one warning per hook."""

    def wrapper(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not getattr(state, "is_world_process_zero", True):
            return  # every rank runs the callbacks; only world rank 0 writes
        try:
            hook(self, args, state, control, **kwargs)
        except Exception as exc:
            if hook.__name__ not in self._failed_hooks:
                self._failed_hooks.add(hook.__name__)
                _warn(f"mudpuppy: {hook.__name__} failed ({_error_text(exc)}); training goes on")

    wrapper.__name__ = hook.__name__
    wrapper.__doc__ = hook.__doc__
    return wrapper


class _MonitorCallbackBase:
    """Records a `transformers.Trainer` run as a run directory (format v1).

        Trainer(..., callbacks=[MonitorCallback("runs", name="qwen-lora", lora_every=50)])

    Writes meta (config taken from the Trainer), `metrics` per train log, `eval`, `progress`
    (at most every 2 s), `checkpoint`, `lora` norms every `lora_every` steps, and `end`; with
    `sample_prompts` (a list, or a file with one prompt per line) also `samples`: greedy
    completions every `sample_every` steps. Only world rank 0 writes. Nothing here raises into
    training.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "runs",
        name: str | None = None,
        *,
        lora_every: int | None = 50,
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
        progress_every_s: float = 2.0,
        clock: Any = time.time,
        sample_prompts: Iterable[str] | str | os.PathLike[str] | None = None,
        sample_every: int = 100,
        sample_max_new_tokens: int = 64,
    ) -> None:
        self.root = os.fspath(root)
        self.name = name
        self.lora_every = lora_every
        self.extra_config = dict(config or {})
        self.resume = resume
        self.progress_every_s = progress_every_s
        self._clock = clock
        self.writer: RunWriter | None = None
        self._probe: LoraProbe | None = None
        self._probe_model: Any = None
        self._last_lora_step: int | None = None
        self._on_cuda = False
        self._count_tokens = False
        self._failed_hooks: set[str] = set()
        # off unless prompts are given; bad prompts or settings fail here, before training
        self._sampler = (
            _Sampler(_read_prompts(sample_prompts), sample_every, sample_max_new_tokens)
            if sample_prompts is not None
            else None
        )

    @_guarded
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        resume = self.resume
        if self.writer is not None:
            # train() called again on the same Trainer: continue the same run directory.
            self.writer.close(STATUS_INTERRUPTED)
            self.name, resume = self.writer.name, True
        config = _trainer_config(args, state, model, kwargs.get("train_dataloader"))
        config.update(self.extra_config)
        shape = _recorded_model_shape(args, model, kwargs.get("train_dataloader"), config)
        device = getattr(args, "device", None)
        self._on_cuda = getattr(device, "type", None) == "cuda"
        self._count_tokens = getattr(args, "include_num_input_tokens_seen", "no") not in (
            "no",
            False,
            None,
        )
        self.writer = RunWriter(
            self.root,
            self.name,
            config=config,
            resume=resume,
            resumed_from=state.global_step if state.global_step else None,
            world_size=getattr(args, "world_size", 1),
            max_steps=state.max_steps or None,
            num_train_epochs=state.num_train_epochs or getattr(args, "num_train_epochs", None),
            gpus=_cuda_uuids(self._on_cuda, _cuda_indices_in_use(device, model)),
            rank=0,
            progress_every_s=self.progress_every_s,
            clock=self._clock,
            meta={"model_shape": shape} if shape is not None else None,
        )

    @_guarded
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.writer is None:
            return
        step = state.global_step
        if self.lora_every and step % self.lora_every == 0:
            self._write_lora(step, kwargs.get("model"))
        if self._sampler is not None and step % self._sampler.every == 0:
            self._write_samples(step, args, kwargs)
        self.writer.progress(step)

    @_guarded
    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        logs = kwargs.get("logs")
        if self.writer is None or not logs:
            return
        values = dict(logs)  # other callbacks mutate the shared dict
        for k in values:
            if (k if type(k) is str else str(k)).startswith("eval_"):
                return  # an evaluation log: on_evaluate writes it as `eval`
        epoch = values.pop("epoch", None)
        if not values:
            return
        if self._on_cuda:
            values.update(_cuda_memory(sys.modules["torch"]))
        if self._count_tokens and "num_input_tokens_seen" not in values:
            # transformers puts the count into the logs itself; the daemon reads either name
            values["tokens_seen"] = state.num_input_tokens_seen
        self.writer.log(state.global_step, values, epoch=epoch)

    @_guarded
    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics")
        if self.writer is None or not metrics:
            return
        values = dict(metrics)
        epoch = values.pop("epoch", None)
        values.pop("num_input_tokens_seen", None)  # a train counter, not an eval result
        self.writer.log_eval(state.global_step, values, epoch=epoch)

    @_guarded
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.writer is None:
            return
        step = state.global_step
        self.writer.checkpoint(step, os.path.join(args.output_dir, f"checkpoint-{step}"))

    @_guarded
    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.writer is None:
            return
        step = state.global_step
        try:
            if self.lora_every and step and self._last_lora_step != step:
                self._write_lora(step, kwargs.get("model"))  # the final adapter state
            if self._sampler is not None and step and self._sampler.last_step != step:
                self._write_samples(step, args, kwargs)  # what the final model says
        finally:
            self.writer.close(STATUS_COMPLETED, step=step)

    def _write_lora(self, step: int, model: Any) -> None:
        assert self.writer is not None
        if model is None:
            return
        if self._probe is None or self._probe_model is not model:
            self._probe = LoraProbe(model)  # the module walk happens once per model
            self._probe_model = model
        if not self._probe:
            return
        try:
            norms = self._probe.norms()
        except LoraNotMeasurable as exc:
            # Sharded weights (FSDP, tensor parallel): a shard's norms would be wrong.
            self.lora_every = None
            _warn(f"mudpuppy: {exc}; LoRA norms are not measured, no more lora events")
            return
        except Exception as exc:
            # An adapter layout this code does not know: stop measuring, keep recording.
            self.lora_every = None
            _warn(f"mudpuppy: LoRA norms failed ({_error_text(exc)}); no more lora events")
            return
        self.writer.log_lora(step, norms)
        self._last_lora_step = step

    def _write_samples(self, step: int, args: Any, hook_kwargs: Mapping[str, Any]) -> None:
        assert self.writer is not None and self._sampler is not None
        tokenizer = hook_kwargs.get("processing_class") or hook_kwargs.get("tokenizer")
        try:
            items, took_s = self._sampler.generate(hook_kwargs.get("model"), tokenizer, args)
        except Exception as exc:
            # One warning, and no more generation: a failing generate() usually fails every time,
            # and each try costs the training time.
            self._sampler = None
            _warn(f"mudpuppy: sampling failed ({_error_text(exc)}); no more samples events")
            return
        self._sampler.last_step = step
        self.writer.log_samples(step, items, took_s=took_s)


def _cuda_memory(torch: Any) -> dict[str, int]:
    """Allocator counters of the current CUDA device: host-side reads, no device sync.

    memory_allocated(), memory_reserved() and max_memory_allocated() each flatten and sort the
    whole statistics tree; the nested form is that tree as the allocator returns it, read once.
    """
    try:
        stats = torch.cuda.memory_stats_as_nested_dict()
        return {
            "mem_allocated": stats["allocated_bytes"]["all"]["current"],
            "mem_reserved": stats["reserved_bytes"]["all"]["current"],
            "mem_peak": stats["allocated_bytes"]["all"]["peak"],
        }
    except (AttributeError, KeyError, TypeError):
        # another torch layout: the documented one-value functions
        return {
            "mem_allocated": torch.cuda.memory_allocated(),
            "mem_reserved": torch.cuda.memory_reserved(),
            "mem_peak": torch.cuda.max_memory_allocated(),
        }


def _trainer_config(args: Any, state: Any, model: Any, train_dataloader: Any) -> dict[str, Any]:
    """The meta `config` from TrainingArguments, the Trainer state and the model."""
    a = args
    world = int(getattr(a, "world_size", 1) or 1)
    per_device = getattr(a, "per_device_train_batch_size", None)
    accum = getattr(a, "gradient_accumulation_steps", 1) or 1
    config: dict[str, Any] = {
        "model": _model_name(model),
        "method": "full",
        "precision": "bf16"
        if getattr(a, "bf16", False)
        else "fp16"
        if getattr(a, "fp16", False)
        else _model_dtype(model),
        "learning_rate": getattr(a, "learning_rate", None),
        "per_device_train_batch_size": per_device,
        "effective_batch_size": per_device * accum * world if per_device else None,
        "gradient_accumulation_steps": accum,
        "num_train_epochs": getattr(state, "num_train_epochs", None)
        or getattr(a, "num_train_epochs", None),
        "max_steps": getattr(state, "max_steps", None),
        "warmup_steps": getattr(a, "warmup_steps", None),
        "warmup_ratio": getattr(a, "warmup_ratio", None),
        "lr_scheduler_type": getattr(a, "lr_scheduler_type", None),
        "optim": getattr(a, "optim", None),
        "weight_decay": getattr(a, "weight_decay", None),
        "max_grad_norm": getattr(a, "max_grad_norm", None),
        "gradient_checkpointing": getattr(a, "gradient_checkpointing", None),
        "seed": getattr(a, "seed", None),
        "logging_steps": getattr(a, "logging_steps", None),
        "eval_steps": getattr(a, "eval_steps", None),
        "save_steps": getattr(a, "save_steps", None),
        "output_dir": getattr(a, "output_dir", None),
        "world_size": world,
    }
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, Mapping) and peft_config:
        adapters = {}
        for adapter, pc in peft_config.items():
            adapters[adapter] = {
                "peft_type": _json_safe(getattr(pc, "peft_type", None)),
                "r": getattr(pc, "r", None),
                "lora_alpha": getattr(pc, "lora_alpha", None),
                "target_modules": _json_safe(getattr(pc, "target_modules", None)),
                "lora_dropout": getattr(pc, "lora_dropout", None),
                "use_dora": getattr(pc, "use_dora", None),
                "use_rslora": getattr(pc, "use_rslora", None),
            }
        active = getattr(model, "active_adapter", None)
        main = adapters.get(active) if isinstance(active, str) else None
        main = main or next(iter(adapters.values()))
        peft_type = str(main["peft_type"] or "").lower()
        method = "dora" if main.get("use_dora") else peft_type or "peft"
        if method == "lora" and _is_quantized(model):
            method = "qlora"
        config["method"] = method
        for k in ("r", "lora_alpha", "target_modules", "lora_dropout"):
            config[k] = main[k]
        if len(adapters) > 1:
            config["adapters"] = adapters
    quant = _quantization(model)
    if quant:
        config["quantization"] = quant
    trainable, total = _param_counts(model)
    config["trainable_params"] = trainable
    config["total_params"] = total
    try:
        config["train_dataset_size"] = len(train_dataloader.dataset)
    except Exception:
        config["train_dataset_size"] = None
    return config


def _model_name(model: Any) -> str | None:
    if model is None:
        return None
    base = _unwrap_model(model)
    cfg = getattr(base, "config", None)
    name = getattr(cfg, "_name_or_path", None) or getattr(base, "name_or_path", None)
    if name:
        return str(name)
    archs = getattr(cfg, "architectures", None)
    if archs:
        return str(archs[0])
    model_type = getattr(cfg, "model_type", None)
    return f"{type(base).__name__} ({model_type})" if model_type else type(base).__name__


def _model_dtype(model: Any) -> str | None:
    dtype = getattr(model, "dtype", None)
    if dtype is None:
        return None
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(
        str(dtype), str(dtype)
    )


def _quantization(model: Any) -> str | None:
    base = _unwrap_model(model) if model is not None else None
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(base, "is_loaded_in_8bit", False):
        return "8bit"
    qc = getattr(getattr(base, "config", None), "quantization_config", None)
    if qc is not None:
        method = getattr(qc, "quant_method", None) or (
            qc.get("quant_method") if isinstance(qc, Mapping) else None
        )
        return str(getattr(method, "value", method) or "quantized")
    return None


def _is_quantized(model: Any) -> bool:
    return _quantization(model) is not None


def _param_counts(model: Any) -> tuple[int | None, int | None]:
    if model is None:
        return None, None
    counter = getattr(model, "get_nb_trainable_parameters", None)
    if callable(counter):
        # peft counts 4-bit packed weights at their real size
        trainable, total = counter()
        return int(trainable), int(total)
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


# ---------------------------------------------------------------------------------------------
# 6. Model shape (meta `model_shape`): parameter counts by role, the transformer's dimensions and
#    the sequence length, so that the daemon can count training FLOPs per token
#    (docs/efficiency.md). Read once, at train begin; nothing here runs per step.
# ---------------------------------------------------------------------------------------------

# HF config attribute names for each dimension, across architectures (Llama/Mistral/Qwen,
# GPT-2/GPT-J, BLOOM/Falcon, T5/OPT ...); the first one present wins.
_SHAPE_ATTRS: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "ffn_hidden_size"),
    "vocab_size": ("vocab_size",),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"),
    "head_dim": ("head_dim",),
}
# examples looked at to find a uniform sequence length (cheap, once)
_SEQ_LEN_SAMPLES = 8
# a peft adapter parameter: `...lora_A.<adapter>.weight`, `...lora_embedding_A.<adapter>`
_ADAPTER_SEGMENTS = frozenset(
    {"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}
)


def _recorded_model_shape(
    args: Any, model: Any, train_dataloader: Any, config: Mapping[str, Any]
) -> dict[str, Any] | None:
    """`model_shape` for the meta, or None (one warning) when the model cannot be read: a
    model this code does not know must not cost the run its record."""
    if model is None:
        return None
    try:
        return _model_shape(args, model, train_dataloader, config)
    except Exception as exc:
        _warn(f"mudpuppy: model shape not recorded ({_error_text(exc)}); no FLOPs estimate")
        return None


def _model_shape(
    args: Any, model: Any, train_dataloader: Any, config: Mapping[str, Any]
) -> dict[str, Any]:
    base = _unwrap_model(model)
    cfg = getattr(base, "config", None)
    text_config = getattr(cfg, "get_text_config", None)
    if callable(text_config):
        cfg = text_config()  # multimodal models: the language model's dimensions
    shape: dict[str, Any] = {"model_type": _str_or_none(getattr(cfg, "model_type", None))}
    for key, names in _SHAPE_ATTRS.items():
        shape[key] = _first_positive_int(cfg, names)
    if shape["num_kv_heads"] is None and getattr(cfg, "multi_query", False) is True:
        shape["num_kv_heads"] = 1
    hidden, heads = shape["hidden_size"], shape["num_attention_heads"]
    if shape["head_dim"] is None and hidden and heads and hidden % heads == 0:
        shape["head_dim"] = hidden // heads
    trainable, total = _param_counts(model)
    shape["params_total"] = total
    shape["params_trainable"] = trainable
    shape["params_frozen"] = (
        total - trainable if total is not None and trainable is not None else None
    )
    shape.update(_param_roles(model))
    shape["method"] = config.get("method")
    used_frozen = (shape["params_frozen"] or 0) - shape["params_unused"]
    shape["frozen_base"] = bool(trainable and used_frozen > 0)
    seq_len = _uniform_seq_len(train_dataloader)
    shape["seq_len"] = seq_len
    shape["seq_len_source"] = "dataset" if seq_len is not None else None
    shape["max_seq_len"] = _first_positive_int(args, ("max_length", "max_seq_length"))
    return shape


def _first_positive_int(obj: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        v = getattr(obj, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _str_or_none(v: Any) -> str | None:
    return str(v) if v is not None else None


def _param_roles(model: Any) -> dict[str, Any]:
    """The parameters whose role changes the FLOPs: the input embedding table (a lookup, no
    matmul unless tied to the output head) and the parameters the forward pass never uses
    (peft's frozen originals of `modules_to_save`, adapters that are not active)."""
    emb_w = out_w = None
    try:
        emb_w = getattr(model.get_input_embeddings(), "weight", None)
    except Exception:
        pass
    try:
        out_w = getattr(model.get_output_embeddings(), "weight", None)
    except Exception:
        pass
    active = _active_adapters(model)
    unused = 0
    # named_parameters() lists a shared tensor once, under its first name: a tied table that peft
    # also keeps as a module's frozen original is counted as the embedding, not as unused.
    for name, p in model.named_parameters():
        parts = name.split(".")
        if "original_module" in parts:
            unused += p.numel()
        elif active is not None:
            for i, part in enumerate(parts[:-1]):
                if part in _ADAPTER_SEGMENTS and parts[i + 1] not in active:
                    unused += p.numel()
                    break
    return {
        "params_embedding": int(emb_w.numel()) if emb_w is not None else None,
        "embedding_trainable": bool(emb_w.requires_grad) if emb_w is not None else None,
        "tied_embeddings": (out_w is emb_w) if emb_w is not None and out_w is not None else None,
        "params_unused": unused,
    }


def _active_adapters(model: Any) -> frozenset[str] | None:
    if not isinstance(getattr(model, "peft_config", None), Mapping):
        return None
    try:
        active = model.active_adapters
    except Exception:
        active = getattr(model, "active_adapter", None)
    if isinstance(active, str):
        return frozenset({active})
    if isinstance(active, (list, tuple, set, frozenset)):
        return frozenset(str(a) for a in active)
    return None


def _uniform_seq_len(train_dataloader: Any) -> int | None:
    """The sequence length when the first examples of the training set all have the same length
    (fixed-length or pre-packed data); None for variable lengths or a dataset without indexing."""
    try:
        dataset = train_dataloader.dataset
        n = min(len(dataset), _SEQ_LEN_SAMPLES)
        lengths = set()
        for i in range(n):
            item = dataset[i]
            ids = item.get("input_ids") if isinstance(item, Mapping) else None
            if ids is None:
                return None
            shape = getattr(ids, "shape", None)
            lengths.add(int(shape[-1]) if shape else len(ids))
    except Exception:
        return None
    if len(lengths) == 1:
        (length,) = lengths
        return length if length > 0 else None
    return None


def _make_monitor_callback() -> type:
    from transformers import TrainerCallback

    cls = type(
        "MonitorCallback",
        (_MonitorCallbackBase, TrainerCallback),
        {"__module__": __name__, "__doc__": _MonitorCallbackBase.__doc__},
    )
    return cls


if TYPE_CHECKING:
    from transformers import TrainerCallback

    class MonitorCallback(_MonitorCallbackBase, TrainerCallback): ...


def __getattr__(name: str) -> Any:
    # PEP 562: `MonitorCallback` subclasses transformers.TrainerCallback, so it is built on first
    # use; `import mudpuppy_callback` alone never imports transformers or torch.
    if name == "MonitorCallback":
        cls = _make_monitor_callback()
        globals()["MonitorCallback"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# 7. Samples: greedy generation during training (torch imported only when used)
# ---------------------------------------------------------------------------------------------

# prompts per generate() call: left-padded batches, so a prompt set costs a few calls, not one
# per prompt
_SAMPLE_BATCH = 8


def _read_prompts(source: Iterable[str] | str | os.PathLike[str]) -> list[str]:
    """Prompts from a list, or from a UTF-8 text file (a str or path): one prompt per line, the
    line as written without its line break; blank (whitespace-only) lines are skipped."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8-sig") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT,
                "no such prompts file (a string for sample_prompts names a file with one "
                "prompt per line; pass a list for the prompts themselves)",
                path,
            ) from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"prompts file {path!r} is not UTF-8 text ({exc.reason})") from None
        prompts = [line for line in lines if line.strip()]
        where = f"prompts file {path!r}"
    else:
        prompts = list(source)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"sample_prompts[{i}] is a {type(p).__name__}, not a str")
            if not p.strip():
                raise ValueError(f"sample_prompts[{i}] is blank")
        where = "sample_prompts"
    if not prompts:
        raise ValueError(f"{where} holds no prompts")
    if len(prompts) > MAX_SAMPLE_ITEMS:
        raise ValueError(f"{where} holds {len(prompts)} prompts; at most {MAX_SAMPLE_ITEMS}")
    return prompts


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _Sampler:
    """Greedy completions of a fixed prompt set by the live model, leaving training as it was:
    the modules' train/eval flags and every random generator are restored afterwards."""

    def __init__(self, prompts: list[str], every: int, max_new_tokens: int) -> None:
        self.prompts = prompts
        self.every = _positive_int("sample_every", every)
        self.max_new_tokens = _positive_int("sample_max_new_tokens", max_new_tokens)
        self.last_step: int | None = None

    def generate(
        self, model: Any, processing_class: Any, args: Any
    ) -> tuple[list[dict[str, str]], float]:
        """([{"prompt", "completion"}], seconds taken)."""
        import torch

        if model is None or not callable(getattr(model, "generate", None)):
            raise RuntimeError("the Trainer's model has no generate()")
        tokenizer = _text_tokenizer(processing_class)
        _check_not_sharded(model, args)
        t0 = time.perf_counter()
        encoded = [_encode_prompt(tokenizer, p) for p in self.prompts]
        pad_id = _pad_id(tokenizer, model)
        device = _input_device(model)
        completions: list[str] = []
        flags = [(m, m.training) for m in model.modules()]
        rng = _save_rng(torch)
        try:
            model.eval()
            with torch.no_grad():
                for start in range(0, len(encoded), _SAMPLE_BATCH):
                    chunk = encoded[start : start + _SAMPLE_BATCH]
                    width = max(len(ids) for ids in chunk)
                    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                    mask = torch.zeros((len(chunk), width), dtype=torch.long)
                    for row, seq in enumerate(chunk):  # left padding: every prompt ends at `width`
                        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                        mask[row, width - len(seq) :] = 1
                    out = model.generate(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        num_beams=1,
                        repetition_penalty=1.0,
                        pad_token_id=pad_id,
                        use_cache=True,
                    )
                    new = out[:, width:].tolist()  # one device sync per batch
                    completions.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
        finally:
            for module, training in flags:
                module.training = training
            _restore_rng(rng)
        took_s = time.perf_counter() - t0
        items = [
            {"prompt": p, "completion": c} for p, c in zip(self.prompts, completions, strict=True)
        ]
        return items, took_s


def _text_tokenizer(processing_class: Any) -> Any:
    """The tokenizer in the Trainer's processing class (a multimodal processor carries one)."""
    tok = processing_class
    inner = getattr(processing_class, "tokenizer", None)
    if inner is not None and callable(getattr(inner, "batch_decode", None)):
        tok = inner
    if tok is None or not callable(tok) or not callable(getattr(tok, "batch_decode", None)):
        raise RuntimeError(
            "the Trainer has no tokenizer to sample with (pass processing_class=tokenizer to it)"
        )
    return tok


def _encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        # the template adds the special tokens (BOS, role markers) itself
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    if not ids:
        raise ValueError(f"prompt {prompt[:40]!r} is no tokens for this tokenizer")
    return list(ids)


def _pad_id(tokenizer: Any, model: Any) -> int:
    gen = getattr(model, "generation_config", None)
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
        getattr(gen, "pad_token_id", None),
        getattr(gen, "eos_token_id", None),
    ):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0


def _input_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    for p in model.parameters():
        return p.device
    return "cpu"


def _check_not_sharded(model: Any, args: Any) -> None:
    """Generating on rank 0 alone would hang a model whose weights are gathered collectively."""
    if getattr(args, "fsdp", None) or type(model).__name__ == "FullyShardedDataParallel":
        raise RuntimeError("the model is sharded with FSDP; rank 0 cannot generate alone")
    p = next(iter(model.parameters()), None)
    # by class name and attribute: importing torch.distributed or deepspeed to check would cost
    if type(p).__name__ == "DTensor" or hasattr(p, "ds_id"):
        raise RuntimeError("the model's weights are sharded; rank 0 cannot generate alone")


def _save_rng(torch: Any) -> list[tuple[Any, Any]]:
    """(setter, state) of every random generator training may draw from: Python's, numpy's,
    torch's CPU generator and those of each initialized accelerator."""
    import random

    saved: list[tuple[Any, Any]] = [
        (random.setstate, random.getstate()),
        (torch.set_rng_state, torch.get_rng_state()),
    ]
    np = sys.modules.get("numpy")
    if np is not None:
        saved.append((np.random.set_state, np.random.get_state()))
    for name in ("cuda", "xpu"):
        backend = getattr(torch, name, None)
        try:
            if backend is not None and backend.is_available() and backend.is_initialized():
                saved.append((backend.set_rng_state_all, backend.get_rng_state_all()))
        except (AttributeError, RuntimeError):
            pass
    mps = getattr(torch, "mps", None)
    try:
        if mps is not None and torch.backends.mps.is_available():
            saved.append((mps.set_rng_state, mps.get_rng_state()))
    except (AttributeError, RuntimeError):
        pass
    return saved


def _restore_rng(saved: list[tuple[Any, Any]]) -> None:
    for setter, state in saved:
        setter(state)
