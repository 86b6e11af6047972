"""Read-side helpers over a RunState: summary, series, points since a cursor, LoRA, export rows."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mudpuppy_monitor.core import status as st
from mudpuppy_monitor.core.coerce import as_positive_int32
from mudpuppy_monitor.core.decimate import decimate, minmax_indices, select_range
from mudpuppy_monitor.core.run import LOSS, RunState
from mudpuppy_monitor.core.summary import RunSummary

LR_KEYS = ("learning_rate", "lr")


def run_status(
    run: RunState,
    now: float,
    pid_alive: st.PidAlive,
    host: str,
    stall_after_s: float | None = None,
) -> str:
    """The status alone: what the periodic pass compares every second, without a summary."""
    meta = run.meta
    pid = as_positive_int32(meta.get("pid"))
    run_host = meta.get("host") if isinstance(meta.get("host"), str) else None
    local_pid = pid if pid is not None and (run_host is None or run_host == host) else None
    last_t = run.last_event_t
    silence = None if last_t is None else max(0.0, now - last_t)
    ended = run.end["status"] if run.end else ("completed" if run.finished else None)
    return st.run_status(
        ended=ended,
        silence_s=silence,
        gap_s=run.typical_gap(),  # cached until more events arrive
        local_pid=local_pid,
        pid_alive=pid_alive,
        stall_after_s=stall_after_s,
    )


def make_summary(
    run: RunState,
    now: float,
    pid_alive: st.PidAlive,
    host: str,
    stall_after_s: float | None = None,
    loading: dict[str, int] | None = None,
) -> RunSummary:
    """`loading`: the progress of a run whose backlog is still being read (its status is
    `unknown` until then: the end of the file decides it)."""
    meta = run.meta
    pid = as_positive_int32(meta.get("pid"))
    run_host = meta.get("host") if isinstance(meta.get("host"), str) else None
    last_t = run.last_event_t
    silence = None if last_t is None else max(0.0, now - last_t)
    status = (
        "unknown" if loading is not None else run_status(run, now, pid_alive, host, stall_after_s)
    )
    steps_per_s, tokens_per_s = run.rates()
    if steps_per_s is None:
        steps_per_s = run.rate_hint
    step = run.last_step
    eta = None
    if status == "completed":
        eta = 0.0
    elif status in ("running", "stalled"):
        if run.max_steps and step is not None and steps_per_s and steps_per_s > 0:
            eta = max(0.0, (run.max_steps - step) / steps_per_s)
        elif run.eta_hint is not None:
            eta = max(0.0, run.eta_hint[0] - max(0.0, now - run.eta_hint[1]))
    elapsed = None
    if run.started_t is not None:
        end_t = now if status in ("running", "stalled") else (last_t or now)
        elapsed = max(0.0, end_t - run.started_t)
    elif run.elapsed_hint is not None:
        elapsed = run.elapsed_hint
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    gpus = meta.get("gpus")
    gpus = [g for g in gpus if isinstance(g, str)] if isinstance(gpus, list) else []
    error = None
    if run.end and run.end.get("error"):
        error = str(run.end["error"])
    elif status in ("failed", "crashed") and run.log is not None and run.log.exception():
        # no error of its own: the traceback the job printed last says why
        error = run.log.exception()
    elif run.errors:
        error = "; ".join(sorted(set(run.errors.values())))
    lr = None
    for key in LR_KEYS:
        lr = run.train.last(key)
        if lr is not None:
            break
    return RunSummary(
        id=run.id,
        name=name or run.id,
        source=run.source,
        status=status,
        step=step,
        max_steps=run.max_steps,
        epoch=run.last_epoch,
        num_train_epochs=run.num_train_epochs,
        loss=run.train.last(LOSS),
        best_loss=run.best_loss,
        eval_loss=run.eval.last("eval_loss"),
        best_eval_loss=run.best_eval_loss,
        learning_rate=lr,
        grad_norm=run.train.last("grad_norm"),
        steps_per_s=steps_per_s,
        tokens_per_s=tokens_per_s,
        eta_s=eta,
        elapsed_s=elapsed,
        started_t=run.started_t,
        last_event_t=last_t,
        last_event_age_s=silence,
        bad_lines=run.bad_lines,
        host=run_host,
        pid=pid,
        ppid=as_positive_int32(meta.get("ppid")),
        world_size=as_positive_int32(meta.get("world_size")),
        gpus=gpus,
        error=error,
        nonfinite=run.nonfinite,
        samples=len(run.samples),
        generation=run.generation,
        loading=loading,
    )


class SeriesAnswer(dict[str, dict[str, Any]]):
    """A `series()` answer: {name: {"x", "y", "count", "decimated"}}, and the generation of the
    run the data was read from (None when the run is unknown)."""

    def __init__(self, generation: int | None) -> None:
        super().__init__()
        self.generation = generation


@dataclass(frozen=True)
class LoraRow:
    """The newest LoRA snapshot of a run: per layer its A, B and update norms (NaN when the
    writer did not report one)."""

    step: int
    t: float
    layers: dict[str, dict[str, float]]


def counts(run: RunState) -> dict[str, int]:
    out = {}
    for name in run.series_names():
        table = run.table_of(name)
        if table is not None:
            out[name] = table.count(name)
    return out


def detail(run: RunState, summary: RunSummary) -> dict[str, Any]:
    return {
        "id": run.id,
        "summary": summary.to_dict(),
        "meta": dict(run.meta),
        "source": run.source,
        "series": run.series_names(),
        "counts": counts(run),
        "lora_layers": list(run.lora.layers),
        "lora_snapshots": run.lora.n,
        "bad_lines": run.bad_lines,
        "last_bad_line": run.last_bad,
        "skipped_lines": run.skipped_lines,
        "skipped_kinds": dict(run.skipped_kinds),
        "samples": len(run.samples),
        "errors": dict(run.errors),
        "markers": list(run.markers),
        "generation": run.generation,
        "log": None if run.log is None else {"first": run.log.first, "end": run.log.end},
        "superseded_points": run.superseded.points,
    }


def series(
    run: RunState,
    names: Iterable[str],
    x: str,
    start: float | None,
    end: float | None,
    points: int,
    arrays: bool = False,
) -> SeriesAnswer:
    """Per name {"x", "y", "count", "decimated"}; x and y as lists, or as numpy arrays when
    `arrays` (views of the store are safe to read after the lock: arrays are only appended to
    past their length, or replaced, so a view never changes; see export_rows)."""
    out = SeriesAnswer(run.generation)
    for name in names:
        table = run.table_of(name)
        if table is None:
            continue
        cols = table.series(name)
        assert cols is not None
        steps, ts, ys = cols
        xs = ts if x == "time" else steps
        count = len(ys)
        if x == "time" or start is not None or end is not None:
            idx = select_range(xs, start, end)
            if x == "time" and isinstance(idx, slice):
                idx = np.flatnonzero(np.isfinite(xs))
            xs, ys = xs[idx], ys[idx]
        dx, dy, dec = decimate(xs, ys, points)
        if arrays:
            out[name] = {"x": dx, "y": dy, "count": count, "decimated": dec}
        else:
            out[name] = {"x": dx.tolist(), "y": dy.tolist(), "count": count, "decimated": dec}
    return out


def columns(run: RunState, names: Iterable[str], points: int) -> dict[str, dict[str, Any]]:
    """Per series its step, time and value columns (numpy arrays) decimated to about `points`
    with the min/max per bucket of `series()`, the first and last point always kept (a chart
    of the columns starts and ends where the run did). `count` is the full length."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        table = run.table_of(name)
        if table is None:
            continue
        steps, ts, ys = table.series(name)  # type: ignore[misc]
        n = len(ys)
        idx = minmax_indices(ys, points)
        if idx is not None:
            idx = np.union1d(idx, np.array([0, n - 1], dtype=np.int64))
            steps, ts, ys = steps[idx], ts[idx], ys[idx]
        out[name] = {
            "step": np.array(steps, dtype=np.int64),
            "t": np.array(ts, dtype=np.float64),
            "y": np.array(ys, dtype=np.float64),
            "count": n,
            "decimated": idx is not None,
        }
    return out


def points_since(
    run: RunState, cursor: dict[str, int], names: Iterable[str] | None, limit: int | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    wanted = run.series_names() if names is None else names
    for name in wanted:
        table = run.table_of(name)
        if table is None:
            continue
        n = table.count(name)
        i0 = max(0, int(cursor.get(name, 0)))
        if n <= i0:
            continue
        if limit is not None and n - i0 > limit:
            i0 = n - limit
        steps, ts, ys = table.series(name)  # type: ignore[misc]
        out[name] = {
            "i0": i0,
            "step": steps[i0:n].tolist(),
            "t": ts[i0:n].tolist(),
            "y": ys[i0:n].tolist(),
        }
    return out


def lora(run: RunState, points: int) -> dict[str, Any] | None:
    store = run.lora
    if store.n == 0:
        return None
    n = store.n
    if points > 0 and n > points:
        pick = np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))
    else:
        pick = np.arange(n)
    out: dict[str, Any] = {
        "layers": list(store.layers),
        "steps": store.steps[pick].tolist(),
        "t": store.t[pick].tolist(),
    }
    width = len(store.layers)
    for key in ("A", "B", "update"):
        mat = store.data.get(key)
        out[key] = (
            mat[pick, :width].T.tolist()
            if mat is not None
            else [[math.nan] * len(pick) for _ in range(width)]
        )
    for key, mat in store.data.items():
        if key not in out:
            out[key] = mat[pick, :width].T.tolist()
    return out


def last_lora(run: RunState) -> LoraRow | None:
    store = run.lora
    n = store.n
    if n == 0:
        return None
    width = len(store.layers)
    keys = ("A", "B", "update")
    cols = {}
    for key in keys:
        mat = store.data.get(key)
        cols[key] = mat[n - 1, :width].tolist() if mat is not None else [math.nan] * width
    layers = {name: {key: cols[key][i] for key in keys} for i, name in enumerate(store.layers)}
    return LoraRow(int(store.steps[n - 1]), float(store.t[n - 1]), layers)


def export_rows(
    run: RunState, lock: Any = None, superseded: bool = False
) -> Iterator[tuple[str, int, float, float, bool]]:
    """(series, step, t, value, superseded) for every stored point, series by series, in file
    order; with `superseded`, then the points resumed attempts replaced (flag True).

    Every series is cut under `lock` at one moment (views of what is stored: arrays are only
    appended to, and a resumed attempt replaces them with new ones, so they never change below
    their length), then rows are produced from those cuts without the lock: an export during
    live writes is a consistent prefix of the run and never sees a dict or an array change
    under it.
    """
    with lock if lock is not None else contextlib.nullcontext():
        cuts = [(name, run.table_of(name).series(name)) for name in run.series_names()]  # type: ignore[union-attr]
        store = run.lora
        n = store.n
        lora_steps, lora_t = store.steps[:n], store.t[:n]
        lora_cols = [
            (f"lora/{layer}/{key}", mat[:n, j])
            for layer, j in list(store.layers.items())
            for key, mat in list(store.data.items())
            if j < mat.shape[1]
        ]
        old = list(run.superseded.columns) if superseded else []
    return _rows_from(cuts, lora_steps, lora_t, lora_cols, old)


def _rows_from(
    cuts: list, lora_steps: np.ndarray, lora_t: np.ndarray, lora_cols: list, old: list
) -> Iterator[tuple[str, int, float, float, bool]]:
    for name, (steps, ts, ys) in cuts:
        yield from _column_rows(name, steps, ts, ys, False)
    s_list, t_list = lora_steps.tolist(), lora_t.tolist()
    for name, col in lora_cols:
        for s, t, v in zip(s_list, t_list, col.tolist(), strict=True):
            if not math.isnan(v):
                yield (name, s, t, v, False)
    for name, steps, ts, ys in old:
        yield from _column_rows(name, steps, ts, ys, True)


def _column_rows(
    name: str, steps: np.ndarray, ts: np.ndarray, ys: np.ndarray, flag: bool
) -> Iterator[tuple[str, int, float, float, bool]]:
    for i in range(0, len(ys), 65536):
        k = len(ys[i : i + 65536])
        yield from zip(
            [name] * k,
            steps[i : i + 65536].tolist(),
            ts[i : i + 65536].tolist(),
            ys[i : i + 65536].tolist(),
            [flag] * k,
            strict=True,
        )


def log_tail(run: RunState, n: int) -> dict[str, Any]:
    """The last `n` lines of the run's output held in memory (none when it has no output.log):
    `start` is the number of the first line returned, `end` the number of the next to come."""
    log = run.log
    if log is None:
        return {"generation": run.generation, "start": 0, "end": 0, "first": 0, "lines": [],
                "skipped": 0}  # fmt: skip
    start, lines = log.tail(n)
    return {
        "generation": run.generation,
        "start": start,
        "end": log.end,
        "first": log.first,
        "lines": lines,
        "skipped": log.skipped,
    }


def log_since(run: RunState, i: int, limit: int | None) -> tuple[int, list[str]]:
    """(i0, the lines from line `i` on that are still held; at most the last `limit`)."""
    if run.log is None:
        return 0, []
    return run.log.since(i, limit)
