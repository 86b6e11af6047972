"""LLaMA-Factory output dirs: `trainer_log.jsonl`, tailed live like `events.jsonl`.

A row: `current_steps`, `total_steps`, then whatever was logged (`loss`, `lr` or `learning_rate`,
`eval_loss`, `epoch`, `throughput` as a number or a string, `total_tokens` ...), and times as
"H:MM:SS" or "N days, H:MM:SS". Rows carry no wall time: t = (file mtime - elapsed of the newest
row at the first read) + elapsed, so the first read anchors the run on the clock and later rows
follow it. `lr` is stored as `learning_rate`, the name the other sources use.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from mudpuppy_monitor.core.coerce import as_float, as_number, as_step, loads_lenient
from mudpuppy_monitor.core.rows import EPOCH, Rows
from mudpuppy_monitor.core.run import EVAL_PREFIX, RunState
from mudpuppy_monitor.core.sources.base import Listing, Lock, SourceKind
from mudpuppy_monitor.core.tail import FileTail, ReadResult, poll_tail

KIND = "llamafactory"
TRAINER_LOG = "trainer_log.jsonl"
BOOKKEEPING = frozenset(
    {"current_steps", "total_steps", "percentage", "elapsed_time", "remaining_time"}
)
RENAME = {"lr": "learning_rate"}
_DURATION = re.compile(r"^\s*(?:(\d+)\s+days?,\s*)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def parse_duration(v: Any) -> float | None:
    """Seconds from "H:MM:SS", "N days, H:MM:SS" or a number; None otherwise."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        x = as_float(v)
        return x if math.isfinite(x) else None
    if not isinstance(v, str):
        return None
    m = _DURATION.match(v)
    if not m:
        return None
    days, h, mi, s = m.groups()
    try:
        out = int(days or 0) * 86400.0 + int(h) * 3600.0 + int(mi) * 60.0 + float(s)
    except OverflowError:  # thousands of digits of days
        return None
    return out if math.isfinite(out) else None


def claims(listing: Listing) -> bool:
    return TRAINER_LOG in listing.files


class LlamaFactorySource:
    def __init__(self, path: str, root: str | None) -> None:
        self.path = path
        self.log = FileTail(os.path.join(path, TRAINER_LOG), root)
        self.base_t: float | None = None

    def poll(self, run: RunState, lock: Lock) -> tuple[bool, bool]:
        def apply(res: ReadResult) -> None:
            rows = [r for block in res.blocks for r in block.split(b"\n")[:-1]]
            with lock:
                run.bad_lines += res.skipped
                self._apply(run, rows)

        return poll_tail(self.log, run.errors, TRAINER_LOG, lock, apply)

    def _apply(self, run: RunState, lines: list[bytes]) -> None:
        parsed: list[dict[str, Any]] = []
        for line in lines:
            try:
                obj = loads_lenient(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or as_step(obj.get("current_steps")) is None:
                run.bad_lines += 1
                run.last_bad = "not a trainer_log row (no integer current_steps)"
                continue
            parsed.append(obj)
        if not parsed:
            return
        if self.base_t is None:
            last_elapsed = next(
                (
                    e
                    for e in (parse_duration(o.get("elapsed_time")) for o in reversed(parsed))
                    if e is not None
                ),
                None,
            )
            if last_elapsed is not None:
                self.base_t = self.log.mtime - last_elapsed
                run.started_t = self.base_t
        train, evals = Rows(), Rows()
        prog_steps: list[int] = []
        prog_ts: list[float] = []
        for o in parsed:
            step = as_step(o["current_steps"])
            assert step is not None
            elapsed = parse_duration(o.get("elapsed_time"))
            t = (
                self.base_t + elapsed
                if self.base_t is not None and elapsed is not None
                else math.nan
            )
            total = as_step(o.get("total_steps"))
            if total:
                run.max_steps = total
            remaining = parse_duration(o.get("remaining_time"))
            if remaining is not None and math.isfinite(t):
                run.eta_hint = (remaining, t)
            if elapsed is not None:
                run.elapsed_hint = elapsed
            epoch = as_number(o.get(EPOCH))
            values: dict[str, float] = {}
            eval_values: dict[str, float] = {}
            for k, v in o.items():
                if k in BOOKKEEPING or k == EPOCH:
                    continue
                x = as_number(v)
                if x is None:
                    continue
                if k.startswith(EVAL_PREFIX):
                    eval_values[k] = x
                else:
                    values[RENAME.get(k, k)] = x
            if eval_values:
                evals.add(step, t, eval_values)
                if values:
                    train.add(step, t, values)
            elif values:
                if epoch is not None:
                    values[EPOCH] = epoch
                train.add(step, t, values)
            else:
                prog_steps.append(step)
                prog_ts.append(t)
            if epoch is not None:
                run.last_epoch = epoch
            run.finished = bool(run.max_steps and step >= run.max_steps)
        last_epoch = run.last_epoch
        run.apply_train(train)
        run.apply_eval(evals)
        run.apply_progress(prog_steps, prog_ts)
        run.last_epoch = last_epoch
        run.last_step = as_step(parsed[-1]["current_steps"])


SOURCE = SourceKind(KIND, claims, LlamaFactorySource)
