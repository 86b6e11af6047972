"""The native run directory (format v1): `meta.json` re-read when it changes, `events.jsonl` tailed."""

from __future__ import annotations

import math
import os
from typing import Any

from mudpuppy_callback import (
    EVENTS_FILE,
    KIND_CHECKPOINT,
    KIND_END,
    KIND_LORA,
    KIND_PROGRESS,
    KIND_SAMPLES,
    KIND_START,
    META_FILE,
)

from mudpuppy_monitor.core.coerce import as_float, as_step
from mudpuppy_monitor.core.files import read_json
from mudpuppy_monitor.core.outputlog import LOG_FILE, OutputTail
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.sources.base import Listing, Lock, SourceKind
from mudpuppy_monitor.core.sources.native_decode import NativeBatch, decode_block
from mudpuppy_monitor.core.tail import FileTail, ReadResult, poll_tail

KIND = "native"
MAX_META_BYTES = 16 << 20


def claims(listing: Listing) -> bool:
    return META_FILE in listing.files or EVENTS_FILE in listing.files


def backlog_bytes(path: str) -> int:
    try:
        return os.stat(os.path.join(path, EVENTS_FILE)).st_size
    except OSError:
        return 0


class NativeSource:
    """meta.json (re-read when it changes), events.jsonl (tailed) and, when there is one, the
    job's output.log (its last lines, see core/outputlog.py)."""

    def __init__(self, path: str, root: str | None) -> None:
        self.path = path
        self.root = root
        self.events = FileTail(os.path.join(path, EVENTS_FILE), root)
        self.meta_path = os.path.join(path, META_FILE)
        self.meta_key: tuple | None = None
        self.output = OutputTail(path, root)

    def poll(self, run: RunState, lock: Lock) -> tuple[bool, bool]:
        """Read what is new into `run`. Returns (changed, reset: the run must start over)."""
        changed = self.poll_meta(run, lock)

        def apply(res: ReadResult) -> None:
            batch = NativeBatch()
            batch.bad += res.skipped
            for block in res.blocks:
                decode_block(block, batch)  # outside the lock: decoding is the slow part
            with lock:
                apply_batch(run, batch)

        tail_changed, reset = poll_tail(self.events, run.errors, EVENTS_FILE, lock, apply)
        if reset:
            return True, True
        return self._poll_output(run, lock) or changed or tail_changed, False

    def _poll_output(self, run: RunState, lock: Lock) -> bool:
        got = self.output.poll()
        if got is None:
            return False
        lines, skipped, error = got
        with lock:
            if lines or skipped:
                run.apply_log(lines, skipped)
            if error:
                run.errors[LOG_FILE] = error
            else:
                run.errors.pop(LOG_FILE, None)
        return True

    def poll_meta(self, run: RunState, lock: Lock) -> bool:
        """Read meta.json again when it changed (also what a run shows while its events load)."""
        try:
            st = os.stat(self.meta_path)
        except OSError:
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self.meta_key:
            return False
        self.meta_key = key
        meta, err, transient = read_json(self.meta_path, MAX_META_BYTES, self.root)
        if transient:
            # permissions can change without the file changing: open it again on the next
            # pass (a failed open is cheap); the same error again is not news
            self.meta_key = None
            if run.errors.get(META_FILE) == err:
                return False
        with lock:
            if err:
                run.errors[META_FILE] = err
            elif isinstance(meta, dict):
                run.errors.pop(META_FILE, None)
                run.meta = meta
                apply_meta(run, meta)
            else:
                run.errors[META_FILE] = "meta.json: not a JSON object"
        return True


def apply_meta(run: RunState, meta: dict[str, Any]) -> None:
    ms = meta.get("max_steps")
    if isinstance(ms, int) and as_step(ms):
        run.max_steps = ms
    ne = meta.get("num_train_epochs")
    if isinstance(ne, (int, float)) and not isinstance(ne, bool) and ne > 0:
        run.num_train_epochs = as_float(ne)
    created = meta.get("created")
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        created = as_float(created)
        if math.isfinite(created) and (run.started_t is None or created < run.started_t):
            run.started_t = created


def apply_batch(run: RunState, batch: NativeBatch) -> None:
    run.bad_lines += batch.bad
    if batch.last_errors:
        run.last_bad = batch.last_errors[-1]
    if batch.skipped:
        run.apply_skipped(batch.skipped, batch.unknown)
    for train, evals, events in batch.parts():
        if events and events[0]["kind"] == KIND_START and "resumed_from" in events[0]:
            # it supersedes what came before it, not the rows after it in this part
            run.apply_start(events[0])
            events = events[1:]
        run.apply_train(train)
        run.apply_eval(evals)
        progress = [e for e in events if e["kind"] == KIND_PROGRESS]
        run.apply_progress([e["step"] for e in progress], [e["t"] for e in progress])
        for event in events:
            kind = event["kind"]
            if kind == KIND_LORA:
                run.apply_lora(event["step"], event["t"], event["layers"])
            elif kind == KIND_START:
                run.apply_start(event)
            elif kind == KIND_END:
                run.apply_end(event)
            elif kind == KIND_CHECKPOINT:
                run.apply_checkpoint(event["step"], event["t"], event.get("path"))
            elif kind == KIND_SAMPLES:
                run.apply_samples(event["step"], event["t"], event.get("took_s"), event["items"])


SOURCE = SourceKind(KIND, claims, NativeSource, backlog_bytes)
