"""The launcher's lines in a run directory: its `meta.json` and the `end` the job did not write.

A job that exits without an `end` line (killed, `os._exit`, no Trainer at all) still ends its run:
`failed` with the exit code and the last Python traceback line of its output, `crashed` or
`interrupted` when a signal ended it, `completed` on exit code 0. An `end` the job wrote itself is
never overwritten: the writer knows best (the exception text of the rank that failed, say).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mudpuppy_callback import (
    EVENTS_FILE,
    FORMAT,
    FORMAT_VERSION,
    MAX_LINE_BYTES,
    META_FILE,
    FormatError,
    _read_events_tail,
    decode_line,
    encode_line,
)

from mudpuppy_monitor.launch.output import LOG_FILE, open_append, write_all
from mudpuppy_monitor.tracebacks import last_exception

# signals that ask a job to stop, as a person or a scheduler does: the run is `interrupted`
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})
OUTPUT_TAIL_BYTES = 256 << 10
MAX_ERROR_CHARS = 4000


class Outcome(NamedTuple):
    """How the job's process ended: its return code (negative: killed by that signal) and the
    stop signal the launcher received while it ran, if any."""

    returncode: int
    stop_signal: int | None = None


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def end_fields(outcome: Outcome, output_tail: str) -> dict[str, Any]:
    """The `end` fields for a job that wrote none (without `step`: the caller adds it)."""
    rc = outcome.returncode
    stopped = outcome.stop_signal is not None
    if rc < 0:
        sig = -rc
        status = "interrupted" if stopped or sig in STOP_SIGNALS else "crashed"
        return {
            "status": status,
            "error": f"killed by {signal_name(sig)}",
            "signal": signal_name(sig),
        }
    if rc == 0:
        return {"status": "interrupted" if stopped else "completed", "exit_code": 0}
    if stopped:
        return {"status": "interrupted", "exit_code": rc}
    error = last_exception(output_tail) or f"exit code {rc}"
    return {"status": "failed", "error": error[:MAX_ERROR_CHARS], "exit_code": rc}


def read_output_tail(run_dir: Path, nbytes: int = OUTPUT_TAIL_BYTES) -> str:
    try:
        with open(run_dir / LOG_FILE, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_event(run_dir: Path) -> dict[str, Any] | None:
    """The last valid line of the run's events file, or None."""
    try:
        f = open(run_dir / EVENTS_FILE, "rb")
    except OSError:
        return None
    with f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - MAX_LINE_BYTES - 1)  # the last whole line fits
        f.seek(start)
        pieces = f.read().split(b"\n")
    if start > 0:
        pieces = pieces[1:]
    for raw in reversed(pieces):
        if raw.strip():
            try:
                return decode_line(raw)
            except FormatError:
                continue
    return None


def append_end(run_dir: Path, fields: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Append an `end` line (seq and step continue the file) and return it."""
    path = run_dir / EVENTS_FILE
    next_seq, last_step = _read_events_tail(str(path))
    event: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": next_seq,
        "t": time.time() if now is None else now,
        "kind": "end",
        **fields,
    }
    if last_step is not None and "step" not in event:
        event["step"] = last_step
    fd = open_append(path)
    try:
        write_all(fd, encode_line(event))
    finally:
        os.close(fd)
    return event


def write_meta(run_dir: Path, *, name: str, command: Sequence[str]) -> None:
    """The launcher's `meta.json`: who runs what, until a Trainer writes its own (keeping the
    run id and creation time)."""
    doc = {
        "format": FORMAT,
        "run_id": os.urandom(16).hex(),
        "name": name,
        "created": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),  # the launcher lives exactly as long as the job
        "ppid": os.getppid(),
        "argv": list(command),
        "config": {},
        "versions": {},
        "world_size": None,
        "max_steps": None,
        "num_train_epochs": None,
        "gpus": [],
    }
    tmp = run_dir / f".{META_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / META_FILE)
