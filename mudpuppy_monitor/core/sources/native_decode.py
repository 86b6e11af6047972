"""Decoding blocks of format v1 lines into column rows, fast.

The hot path handles the common line (a well-formed `metrics` event) with orjson and a few type
checks, appending its values straight into the per-column lists. Every other line (other kinds,
bare NaN tokens, a BOM, anything odd) goes through `mudpuppy_callback.decode_line`, the one
reference decoder, so both paths accept and reject exactly the same lines.
"""

from __future__ import annotations

from typing import Any

import orjson
from mudpuppy_callback import (
    FORMAT_VERSION,
    KIND_EVAL,
    KIND_METRICS,
    FormatError,
    decode_line,
    decode_number,
)

from mudpuppy_monitor.core.coerce import STEP_MAX, as_step
from mudpuppy_monitor.core.rows import EPOCH, Rows
from mudpuppy_monitor.core.run import EVAL_PREFIX


class NativeBatch:
    """What one read produced: train and eval rows, other events in file order, bad lines."""

    def __init__(self) -> None:
        self.train = Rows()
        self.eval = Rows()
        self.events: list[dict[str, Any]] = []  # start, progress, lora, checkpoint, end
        self.bad = 0
        self.last_errors: list[str] = []


def decode_block(block: bytes, batch: NativeBatch) -> None:
    """Decode newline-terminated lines of `block` into `batch`."""
    loads = orjson.loads
    train = batch.train
    steps = train.steps
    ts = train.ts
    cols = train.cols
    metrics = KIND_METRICS
    version = FORMAT_VERSION
    lines = block.split(b"\n")
    lines.pop()  # the block ends with a newline: the last piece is empty
    for line in lines:
        try:
            o = loads(line)
        except orjson.JSONDecodeError:
            _slow(line, batch)
            continue
        # `v` and `seq` by type: `True == 1` and `1.0 == 1`, but decode_line refuses both
        if type(o) is dict and o.get("kind") == metrics and type(o.get("v")) is int:
            t = o.get("t")
            st = o.get("step")
            vals = o.get("values")
            seq = o.get("seq")
            if (
                o["v"] == version
                and (type(t) is float or type(t) is int)
                and type(st) is int
                and 0 <= st <= STEP_MAX
                and type(seq) is int
                and seq >= 0
                and type(vals) is dict
            ):
                r = len(steps)
                steps.append(st)
                ts.append(t)
                ep = o.get("epoch")
                if ep is not None and not (type(ep) is float or type(ep) is int):
                    ep = decode_number(ep)
                # as in _slow: a top-level epoch replaces values["epoch"] and comes after the
                # values; one epoch per row either way
                for k, v in vals.items():
                    if k == EPOCH and ep is not None:
                        continue
                    if not (type(v) is float or type(v) is int):
                        v = decode_number(v)
                        if v is None:
                            continue
                    c = cols.get(k)
                    if c is None:
                        c = cols[k] = ([], [])
                    c[0].append(r)
                    c[1].append(v)
                if ep is not None:
                    c = cols.get(EPOCH)
                    if c is None:
                        c = cols[EPOCH] = ([], [])
                    c[0].append(r)
                    c[1].append(ep)
                continue
        _slow(line, batch)


def _bad(batch: NativeBatch, reason: str) -> None:
    batch.bad += 1
    if len(batch.last_errors) < 5:
        batch.last_errors.append(reason)


def _slow(line: bytes, batch: NativeBatch) -> None:
    try:
        event = decode_line(line)
    except FormatError as exc:
        _bad(batch, str(exc))
        return
    except (OverflowError, ValueError) as exc:
        # a number no float can hold (an integer of 400 digits): a bad line, not a dead reader
        _bad(batch, f"number out of range: {exc}")
        return
    if "step" in event and as_step(event["step"]) is None:
        # steps are stored as int64; the reference decoder refuses these too
        _bad(batch, f"{event['kind']} needs a non-negative integer step")
        return
    kind = event["kind"]
    if kind == KIND_METRICS:
        values = dict(event["values"])
        if event.get("epoch") is not None:
            values.pop(EPOCH, None)  # the top-level epoch wins, placed last (as the fast path)
            values[EPOCH] = event["epoch"]
        batch.train.add(event["step"], event["t"], values)
    elif kind == KIND_EVAL:
        values = {
            (k if k.startswith(EVAL_PREFIX) else EVAL_PREFIX + k): v
            for k, v in event["values"].items()
        }
        batch.eval.add(event["step"], event["t"], values)
    else:
        batch.events.append(event)
