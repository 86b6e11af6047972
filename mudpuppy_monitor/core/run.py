"""One run in memory: its tables, LoRA snapshots, markers, and what the summary is made of.

Sources (native, HF trainer state, LLaMA-Factory) decode their files into `Rows` and events and
call the `apply_*` methods; the Monitor turns a RunState into a RunSummary and answers queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mudpuppy_monitor.core import markers as mk
from mudpuppy_monitor.core.coerce import as_step
from mudpuppy_monitor.core.outputlog import LogLines
from mudpuppy_monitor.core.rows import EPOCH, Rows
from mudpuppy_monitor.core.samples import SampleStore
from mudpuppy_monitor.core.store import LoraStore, Table
from mudpuppy_monitor.core.supersede import Superseded, split_lora, split_table

STEPS_PER_S = "steps_per_s"
TOKENS_PER_S = "tokens_per_s"
LOSS = "loss"
EVAL_LOSS = "eval_loss"
EVAL_PREFIX = "eval_"
# token counters as the three sources name them; tokens_per_s is derived from the first present
TOKEN_KEYS = ("tokens_seen", "num_input_tokens_seen", "total_tokens")
RATE_WINDOW_S = 60.0  # steps/s and tokens/s in the summary: over the last minute of events
MAX_SKIPPED_KINDS = 16  # unknown event kinds named per run (all are counted)


class RunState:
    def __init__(self, run_id: str, path: str, source: str, generation: int) -> None:
        self.id = run_id
        self.path = path
        self.source = source
        self.generation = generation
        self.meta: dict[str, Any] = {}
        self.train = Table()
        self.eval = Table()
        self.progress = Table()  # step and time only: keeps step/ETA moving between logs
        # series computed outside the run's files (per-interval efficiency, from GPU samples):
        # in memory only, appended by Monitor.add_derived, void with the generation
        self.derived = Table()
        self.lora = LoraStore()
        self.samples = SampleStore()
        self.markers: list[dict[str, Any]] = []
        self._capped_markers = 0  # nonfinite + spike markers held (at most MAX_MARKERS)
        self.bad_lines = 0
        self.last_bad: str | None = None  # why the latest bad line was refused
        # lines of kinds added to the format after this reader: skipped, not bad
        self.skipped_lines = 0
        self.skipped_kinds: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # per file: why it could not be read
        self.read_failures = 0  # unexpected reader exceptions (see Monitor._read_failed)
        self.end: dict[str, Any] | None = None
        self.starts = 0
        self.started_t: float | None = None
        self.last_event_t: float | None = None
        self.last_step: int | None = None
        self._last_step_t: float | None = None
        self.last_epoch: float | None = None
        self.max_steps: int | None = None
        self.num_train_epochs: float | None = None
        self.nonfinite = 0
        self.finished = False  # a foreign source's own sign of the end (no `end` event exists)
        # hints from foreign sources, used when our own numbers cannot be computed
        self.eta_hint: tuple[float, float] | None = None  # (remaining seconds, at time t)
        self.elapsed_hint: float | None = None
        self.rate_hint: float | None = None
        self.extra_times: list[float] = []  # times of events not kept in a table (start, end ...)
        self.best_loss: float | None = None  # kept as points arrive, not recomputed per query
        self.best_eval_loss: float | None = None  # the same, for eval_loss
        self._gap_key: tuple[int, ...] | None = None
        self._gap: float | None = None
        self.log: LogLines | None = None  # the last lines of output.log, once there is one
        self.superseded = Superseded()  # what resumed attempts replaced (export only)
        # a new generation number: set by the Monitor once the run is visible to queries, so
        # that rows leaving the tables (a resumed attempt) void what clients hold
        self.renumber: Callable[[], int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """What a snapshot of the run keeps (core/snapshot.py): not the Monitor's numbering
        hook, and not the output's lines, which the reader that continues the run reads again
        from output.log (its position is not part of a snapshot)."""
        state = dict(self.__dict__)
        state["renumber"] = None
        state["log"] = None
        return state

    # -- applying decoded data ------------------------------------------------------------

    def apply_train(self, rows: Rows) -> None:
        if not len(rows):
            return
        evals = rows.split_off(EVAL_PREFIX)
        steps, ts, cols = rows.to_arrays()
        table = self.train
        self._add_rates(table, steps, ts, cols)
        olds = {name: table.count(name) for name in cols}
        table.append(steps, ts, cols)
        found = []
        for name in cols:
            found += self._scan_new(
                table, name, olds[name], name not in (STEPS_PER_S, TOKENS_PER_S)
            )
        self._add_markers(found)
        self._note(int(steps[-1]), float(ts[-1]))
        ep = cols.get(EPOCH)
        if ep is not None and int(ep[0][-1]) == len(steps) - 1:
            self.last_epoch = float(ep[1][-1])
        if len(evals):
            self.apply_eval(evals)

    def apply_eval(self, rows: Rows) -> None:
        if not len(rows):
            return
        steps, ts, cols = rows.to_arrays()
        olds = {name: self.eval.count(name) for name in cols}
        self.eval.append(steps, ts, cols)
        found = []
        for name in cols:
            found += self._scan_new(self.eval, name, olds[name], count=False)
        self._add_markers(found)
        self._note(int(steps[-1]), float(ts[-1]))

    def apply_progress(self, steps: list[int], ts: list[float]) -> None:
        if not steps:
            return
        self.progress.append(np.array(steps, dtype=np.int64), np.array(ts, dtype=np.float64), {})
        self._note(steps[-1], ts[-1])

    def apply_lora(self, step: int, t: float, layers: dict[str, dict[str, float]]) -> None:
        self.lora.append(step, t, layers)
        self._note(step, t)

    def apply_samples(self, step: int, t: float, took_s: float | None, items: list) -> None:
        self.samples.append(step, t, took_s, items)
        self.extra_times.append(t)
        self._note(step, t)

    def apply_skipped(self, total: int, kinds: dict[str, int]) -> None:
        self.skipped_lines += total
        for name, n in kinds.items():
            if name in self.skipped_kinds or len(self.skipped_kinds) < MAX_SKIPPED_KINDS:
                self.skipped_kinds[name] = self.skipped_kinds.get(name, 0) + n

    def apply_start(self, event: dict[str, Any]) -> None:
        t = event["t"]
        self.starts += 1
        src = event.get("resumed_from")
        resumed = as_step(src) if isinstance(src, int) and not isinstance(src, bool) else None
        if self.starts > 1:
            ended = self.end
            if resumed is not None:
                self.supersede(resumed, t)
            detail = f"restarted (resumed from {src})" if src is not None else "restarted"
            if ended is not None:
                detail += f"; the attempt before ended {ended['status']}"
                detail += f": {ended['error']}" if ended.get("error") else ""
            step = resumed if resumed is not None else self.last_step
            self.add_marker(mk.marker("restart", step, t, None, detail))
        if self.started_t is None or t < self.started_t:
            # lines are applied kind by kind, so a metrics row may have set it first
            self.started_t = t
        self.end = None  # a new start supersedes an earlier end
        self.extra_times.append(t)
        self._note(None, t)

    def supersede(self, step: int, t: float) -> bool:
        """A new attempt resumes after `step`: what earlier attempts logged past it leaves the
        tables and the markers (docs/run-format.md, "Resumed runs"). Returns whether anything
        left; then the run takes a new generation (the indices clients hold are void)."""
        changed = False
        for attr, out in (
            ("train", self.superseded),
            ("eval", self.superseded),
            ("progress", None),
        ):
            table: Table = getattr(self, attr)
            keep = table.step[: table.n] <= step
            if not keep.all():
                setattr(self, attr, split_table(table, keep, out))
                changed = True
        keep = self.lora.steps[: self.lora.n] <= step
        if not keep.all():
            self.lora = split_lora(self.lora, keep, self.superseded)
            changed = True
        markers = [m for m in self.markers if m["step"] is None or m["step"] <= step]
        if len(markers) != len(self.markers):
            self.markers = markers
            self._capped_markers = sum(m["kind"] in mk.CAPPED_KINDS for m in markers)
            changed = True
        if not changed:
            return False
        self._recount()
        self.last_step, self._last_step_t = step, t
        if self.renumber is not None:
            self.generation = self.renumber()
        return True

    def _recount(self) -> None:
        """best_loss, the non-finite count and the last epoch, from what the tables hold."""
        loss = self.train.series(LOSS)
        finite = loss[2][np.isfinite(loss[2])] if loss is not None else np.empty(0)
        self.best_loss = float(finite.min()) if len(finite) else None
        self.nonfinite = sum(
            int((~np.isfinite(col.values[: col.n])).sum())
            for name, col in self.train.columns.items()
            if name not in (STEPS_PER_S, TOKENS_PER_S)
        )
        epoch = self.train.series(EPOCH)
        self.last_epoch = float(epoch[2][-1]) if epoch is not None and len(epoch[2]) else None

    def apply_log(self, lines: Sequence[str], skipped: int) -> None:
        if self.log is None:
            self.log = LogLines()
        self.log.add(lines)
        self.log.skipped += skipped

    def apply_end(self, event: dict[str, Any]) -> None:
        step = event.get("step", self.last_step)
        self.end = {
            "status": event["status"],
            "step": step,
            "t": event["t"],
            "error": event.get("error"),
        }
        detail = event["status"] + (f": {event['error']}" if event.get("error") else "")
        self.add_marker(mk.marker("end", step, event["t"], None, detail))
        self.extra_times.append(event["t"])
        self._note(step, event["t"])

    def apply_checkpoint(self, step: int, t: float | None, path: str | None) -> None:
        self.add_marker(
            mk.marker("checkpoint", step, t, None, path or f"checkpoint at step {step}")
        )
        if t is not None:
            self.extra_times.append(t)
            self._note(step, t)

    def _add_markers(self, found: list[dict[str, Any]]) -> None:
        # several columns of one read: in the order the rows were written
        for m in sorted(found, key=lambda m: (m["t"] if m["t"] == m["t"] else 0.0, m["step"])):
            self.add_marker(m)

    def add_marker(self, m: dict[str, Any]) -> None:
        # only the kinds a value stream can produce without bound are capped; end, restart and
        # checkpoint markers are few (one per event or directory) and must never be dropped
        if m["kind"] in mk.CAPPED_KINDS:
            if self._capped_markers >= mk.MAX_MARKERS:
                return
            self._capped_markers += 1
        self.markers.append(m)

    def _note(self, step: int | None, t: float | None) -> None:
        if step is not None:
            # the step of the latest event: kinds are applied one after another, so compare times
            known = t is not None and math.isfinite(t)
            if not known or self._last_step_t is None or t >= self._last_step_t:  # type: ignore[operator]
                self.last_step = step
                if known:
                    self._last_step_t = t
        if t is not None and math.isfinite(t):
            if self.last_event_t is None or t > self.last_event_t:
                self.last_event_t = t
            if self.started_t is None:
                self.started_t = t
        if len(self.extra_times) > 256:
            del self.extra_times[:-64]

    def _add_rates(self, table: Table, steps: np.ndarray, ts: np.ndarray, cols: dict) -> None:
        """Derived series: steps/s between consecutive rows, tokens/s between token counts."""
        n = table.n
        if n:
            s_all = np.concatenate([table.step[n - 1 : n], steps])
            t_all = np.concatenate([table.t[n - 1 : n], ts])
        else:
            s_all, t_all = steps, ts
        ds = (s_all[1:] - s_all[:-1]).astype(np.float64)
        dt = t_all[1:] - t_all[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (dt > 0) & (ds >= 0)
            rows = np.flatnonzero(ok) + (0 if n else 1)
            if len(rows):
                cols[STEPS_PER_S] = (rows.astype(np.int32), (ds / dt)[ok])
        for key in TOKEN_KEYS:
            if key in cols:
                self._add_token_rate(table, key, ts, cols)
                break

    def _add_token_rate(self, table: Table, key: str, ts: np.ndarray, cols: dict) -> None:
        rows, vals = cols[key]
        t_new = ts[rows]
        prev = table.series(key)
        if prev is not None and len(prev[2]):
            v_all = np.concatenate([prev[2][-1:], vals])
            t_all = np.concatenate([prev[1][-1:], t_new])
            r_out = rows
        else:
            v_all, t_all, r_out = vals, t_new, rows[1:]
        dv = v_all[1:] - v_all[:-1]
        dt = t_all[1:] - t_all[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (dt > 0) & (dv >= 0)
            if ok.any():
                cols[TOKENS_PER_S] = (r_out[ok].astype(np.int32), (dv / dt)[ok])

    def _scan_new(self, table: Table, name: str, old: int, count: bool) -> list[dict[str, Any]]:
        """Markers for the values appended to a column since index `old` (in index order)."""
        col = table.columns[name]
        values = col.values[: col.n]
        found: list[tuple[int, str]] = []
        starts = mk.nonfinite_starts(values, old)
        if len(starts):
            if count:
                self.nonfinite += int((~np.isfinite(values[old:])).sum())
            found += [(i, "nonfinite") for i in starts[: mk.MAX_MARKERS].tolist()]
        if name == EVAL_LOSS:
            self.best_eval_loss = _lowest(values[old:], self.best_eval_loss)
        if name == LOSS:
            self.best_loss = _lowest(values[old:], self.best_loss)
            found += [(i, "spike") for i in mk.spike_indices(values, old)[:100].tolist()]
        out = []
        for i, kind in sorted(found):
            row = int(col.rows[i]) if col.rows is not None else col.row0 + i
            step, t, v = int(table.step[row]), float(table.t[row]), float(values[i])
            if kind == "nonfinite":
                text = f"{name} is {_word(v)} at step {step}"
            else:
                text = f"{name} spiked to {v:.4g} at step {step}"
            out.append(mk.marker(kind, step, t, name, text))
        return out

    # -- reading --------------------------------------------------------------------------

    def table_of(self, name: str) -> Table | None:
        if name in self.train.columns:
            return self.train
        if name in self.eval.columns:
            return self.eval
        if name in self.derived.columns:
            return self.derived
        return None

    def series_names(self) -> list[str]:
        names = list(self.train.columns)
        names += [n for n in self.eval.columns if n not in self.train.columns]
        if self.derived.columns:  # a name the run logs itself wins (table_of's order)
            held = set(names)
            names += [n for n in self.derived.columns if n not in held]
        return names

    def apply_derived(self, points: list[tuple[int, float, dict[str, float]]]) -> int:
        """Append derived points, (step, t, {name: value}) in time order after those held;
        returns how many rows were appended. Out-of-order or non-finite times are refused."""
        table = self.derived
        last_t = float(table.t[table.n - 1]) if table.n else -math.inf
        kept = []
        for step, t, values in points:
            if math.isfinite(t) and t > last_t and values:
                kept.append((step, t, values))
                last_t = t
        if not kept:
            return 0
        cols: dict[str, tuple[list[int], list[float]]] = {}
        for i, (_, _, values) in enumerate(kept):
            for name, v in values.items():
                rows, vals = cols.setdefault(name, ([], []))
                rows.append(i)
                vals.append(float(v))
        table.append(
            np.array([p[0] for p in kept], dtype=np.int64),
            np.array([p[1] for p in kept], dtype=np.float64),
            {n: (np.array(r, dtype=np.int32), np.array(v)) for n, (r, v) in cols.items()},
        )
        return len(kept)

    def typical_gap(self) -> float | None:
        """Median gap between recent events, cached until more events arrive."""
        key = (self.train.n, self.eval.n, self.progress.n, len(self.extra_times), self.starts)
        if key != self._gap_key:
            self._gap_key = key
            times = self.event_times().tolist()
            gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
            self._gap = gaps[len(gaps) // 2] if len(gaps) >= 2 else None
        return self._gap

    def event_times(self, k: int = 65) -> np.ndarray:
        parts = [tb.t[max(0, tb.n - k) : tb.n] for tb in (self.train, self.eval, self.progress)]
        parts.append(np.array(self.extra_times[-k:], dtype=np.float64))
        times = np.concatenate(parts)
        times = times[np.isfinite(times)]
        times.sort()
        return times[-k:]

    def rates(self) -> tuple[float | None, float | None]:
        """(steps/s, tokens/s) over the last RATE_WINDOW_S seconds of events."""
        steps = _window_rate(
            [
                (self.train.t[: self.train.n], self.train.step[: self.train.n]),
                (self.progress.t[: self.progress.n], self.progress.step[: self.progress.n]),
            ]
        )
        tokens = None
        for key in TOKEN_KEYS:
            s = self.train.series(key)
            if s is not None and len(s[2]):
                tokens = _window_rate([(s[1], s[2])])
                break
        return steps, tokens


def _window_rate(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Rate of a counter over the last RATE_WINDOW_S seconds, from (t, value) columns."""
    last_t = None
    last_v = None
    for t, v in pairs:
        if len(t) and np.isfinite(t[-1]) and (last_t is None or t[-1] > last_t):
            last_t, last_v = float(t[-1]), float(v[-1])
    if last_t is None:
        return None
    ref_t = ref_v = None
    for t, v in pairs:
        if not len(t):
            continue
        # times are appended in order; the first point inside the window is the reference
        i = int(np.searchsorted(t, last_t - RATE_WINDOW_S, side="left"))
        i = min(i, len(t) - 1)
        if np.isfinite(t[i]) and t[i] < last_t and (ref_t is None or t[i] < ref_t):
            ref_t, ref_v = float(t[i]), float(v[i])
    if ref_t is None or last_v is None or ref_v is None or last_v < ref_v:
        return None
    return (last_v - ref_v) / (last_t - ref_t)


def _lowest(new: np.ndarray, best: float | None) -> float | None:
    """The lower of `best` and the finite values in `new`."""
    finite = new[np.isfinite(new)]
    if not len(finite):
        return best
    low = float(finite.min())
    return low if best is None or low < best else best


def _word(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"
