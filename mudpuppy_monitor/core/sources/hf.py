"""HF Trainer output dirs: `trainer_state.json` at the top or in the newest `checkpoint-*/`.

The Trainer rewrites the whole file at each save, so it is re-read when the chosen file changes
(identity, size or mtime) or a newer checkpoint appears. A file in the Trainer's own layout is read
a few megabytes at a time (hf_scan): rows are decoded and stored chunk by chunk, and a file whose
rows start with the bytes already read is decoded only from there on. Any other file is parsed
whole; when its `log_history` extends the rows already read (same steps in the same order), only
the new rows are appended. Otherwise the run is reset. `log_history` rows carry no wall time: their t is NaN, the run's last event time is
the file's mtime, and steps/s comes from the summary row or from checkpoint directory times.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from mudpuppy_monitor.core.coerce import as_number, as_step
from mudpuppy_monitor.core.files import Refused, describe, inside_root, open_regular, read_json_file
from mudpuppy_monitor.core.rows import EPOCH, Rows
from mudpuppy_monitor.core.run import EVAL_PREFIX, RunState
from mudpuppy_monitor.core.sources import hf_scan
from mudpuppy_monitor.core.sources.base import Listing, Lock, SourceKind

KIND = "hf-trainer-state"
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
MAX_STATE_BYTES = 256 << 20  # a file parsed whole; one in the Trainer's layout is read in chunks
# keys of the closing row (`train_runtime` ...) and other non-series row keys
SUMMARY_KEYS = frozenset(
    {
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
        "train_loss",
    }
)
NOT_SERIES = frozenset({"step", EPOCH, "train_runtime"})


def claims(listing: Listing) -> bool:
    """`trainer_state.json` at the top, or in a `checkpoint-N/` subdirectory."""
    if TRAINER_STATE in listing.files:
        return True
    return any(
        CHECKPOINT_RE.match(name) and os.path.isfile(os.path.join(p, TRAINER_STATE))
        for name, p in listing.dirs
    )


class HfStateSource:
    def __init__(self, path: str, root: str | None) -> None:
        self.path = path
        self.root = root
        self.key: tuple | None = None
        self.steps_read: list[int | None] = []  # rows of a file parsed whole
        self.progress = hf_scan.Progress()  # rows of files read in chunks
        self.torn = False  # rows of an unfinished file were stored: read the run again
        self.checkpoints: dict[int, float] = {}  # step -> mtime of the checkpoint dir

    def _candidates(self) -> list[tuple[float, int, str, os.stat_result]]:
        out = []
        paths = [(os.path.join(self.path, TRAINER_STATE), -1)]
        try:
            with os.scandir(self.path) as it:
                for e in it:
                    m = CHECKPOINT_RE.match(e.name)
                    step = as_step(int(m.group(1))) if m else None
                    if step is not None and e.is_dir(follow_symlinks=False):
                        paths.append((os.path.join(e.path, TRAINER_STATE), step))
        except OSError:
            pass
        for p, step in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if os.path.islink(p) and not inside_root(p, self.root):
                continue  # not a candidate at all: its mtime must not pick it either
            out.append((st.st_mtime, step, p, st))
        return out

    def poll(self, run: RunState, lock: Lock) -> tuple[bool, bool]:
        if self.torn:
            return True, True
        cands = self._candidates()
        changed = self._note_checkpoints(run, lock, cands)
        if not cands:
            return changed, False
        mtime, _, path, st = max(cands, key=lambda c: (c[0], c[1]))
        key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self.key:
            return changed, False
        self.key = key
        try:
            fd, _ = open_regular(path, self.root)
        except FileNotFoundError:
            return changed, False
        except (OSError, Refused) as exc:
            if not isinstance(exc, Refused):
                self.key = None  # permissions can change without the file changing: try again
            err = describe(path, exc)
            if run.errors.get(TRAINER_STATE) == err:
                return changed, False
            with lock:
                run.errors[TRAINER_STATE] = err
            return True, False
        try:
            return self._read_chunks(run, lock, fd, mtime)
        except hf_scan.NotTrainerLayout:
            pass
        finally:
            os.close(fd)
        return self._read_whole(run, lock, path, mtime)

    def _read_chunks(self, run: RunState, lock: Lock, fd: int, mtime: float) -> tuple[bool, bool]:
        stored = False

        def on_rows(rows: list[Any]) -> None:
            nonlocal stored
            with lock:
                run.bad_lines += self._apply_rows(run, rows)
            stored = True

        try:
            header, self.progress = hf_scan.scan(fd, self.progress, on_rows)
        except hf_scan.PrefixChanged:
            return True, True
        except hf_scan.NotTrainerLayout:
            if not stored:
                raise
            # the Trainer writes the file in place: this one was cut mid-write, after rows that
            # are now stored; the run is read again from the start on the next pass
            self.torn = True
            return True, False
        except OSError as exc:
            with lock:
                run.errors[TRAINER_STATE] = describe(TRAINER_STATE, exc)
            self.key = None
            return True, stored
        with lock:
            run.errors.pop(TRAINER_STATE, None)
            self._apply_header(run, header, mtime)
        return True, False

    def _read_whole(self, run: RunState, lock: Lock, path: str, mtime: float) -> tuple[bool, bool]:
        state, err = read_json_file(path, MAX_STATE_BYTES, self.root)
        if err or not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
            with lock:
                run.errors[TRAINER_STATE] = err or "trainer_state.json: no log_history list"
            return True, False
        history = [r for r in state["log_history"] if isinstance(r, dict)]
        steps = [as_step(r.get("step")) for r in history]
        n = len(self.steps_read)
        if self.progress.rows or len(steps) < n or steps[:n] != self.steps_read:
            return True, True
        with lock:
            run.errors.pop(TRAINER_STATE, None)
            run.bad_lines += self._apply_rows(run, history[n:])
            self._apply_header(run, state, mtime)
        self.steps_read = steps
        return True, False

    def _note_checkpoints(self, run: RunState, lock: Lock, cands: list) -> bool:
        new = [
            (step, m, p) for m, step, p, _ in cands if step >= 0 and step not in self.checkpoints
        ]
        if not new:
            return False
        with lock:
            started = run.started_t  # a checkpoint's mtime is not when training started
            for step, m, p in sorted(new):
                self.checkpoints[step] = m
                run.apply_checkpoint(step, m, os.path.relpath(os.path.dirname(p), self.path))
            run.started_t = started
            if len(self.checkpoints) >= 2 and run.rate_hint is None:
                (s1, m1), (s2, m2) = sorted(self.checkpoints.items())[-2:]
                if m2 > m1:
                    run.rate_hint = (s2 - s1) / (m2 - m1)
        return True

    def _apply_header(self, run: RunState, state: dict[str, Any], mtime: float) -> None:
        """The fields around log_history (after its rows: global_step may close the run)."""
        max_steps = as_step(state.get("max_steps"))
        if max_steps and max_steps > 0:
            run.max_steps = max_steps
        epochs = as_number(state.get("num_train_epochs"))
        if epochs and epochs > 0:
            run.num_train_epochs = epochs
        gs = as_step(state.get("global_step"))
        if gs is not None:
            run.last_step = gs
            if run.max_steps and gs >= run.max_steps:
                run.finished = True
        if run.last_event_t is None or mtime > run.last_event_t:
            run.last_event_t = mtime

    def _apply_rows(self, run: RunState, rows: list[Any]) -> int:
        """Store log_history rows; returns how many were bad."""
        train, evals = Rows(), Rows()
        bad = 0
        nan = math.nan
        for r in rows:
            if not isinstance(r, dict):
                bad += 1
                continue
            step = as_step(r.get("step"))
            if step is None or step < 0:
                bad += 1
                continue
            epoch = as_number(r.get(EPOCH))
            if epoch is not None:
                run.last_epoch = epoch
            # transformers 5 puts train_runtime (and train_tokens_per_second) on every train row
            # when it counts tokens: only a row without a loss, or with train_loss, closes the run
            if "train_loss" in r or ("loss" not in r and SUMMARY_KEYS & r.keys()):
                run.finished = True
                rate = as_number(r.get("train_steps_per_second"))
                if rate:
                    run.rate_hint = rate
                runtime = as_number(r.get("train_runtime"))
                if runtime:
                    run.elapsed_hint = runtime
                continue
            values = {
                k: x
                for k, v in r.items()
                if k not in NOT_SERIES and (x := as_number(v)) is not None
            }
            if any(k.startswith(EVAL_PREFIX) for k in values):
                evals.add(step, nan, {k: v for k, v in values.items() if k.startswith(EVAL_PREFIX)})
            elif values:
                if epoch is not None:
                    values[EPOCH] = epoch
                train.add(step, nan, values)
        last_epoch = run.last_epoch
        run.apply_train(train)
        run.apply_eval(evals)
        run.last_epoch = last_epoch
        return bad


SOURCE = SourceKind(KIND, claims, HfStateSource)
