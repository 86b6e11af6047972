"""Loading a large backlog on several cores: each worker process reads whole runs.

Attaching to runs that already hold millions of lines is bound by decoding (orjson plus a little
Python per line, under one GIL). When the new runs found by one discovery pass hold enough bytes,
each is read completely in a worker process, exactly as the Monitor would read it (the same
source object polled until caught up), and the finished RunState and source come back pickled:
numpy columns travel as buffers. Anything that goes wrong falls back to reading in-process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from mudpuppy_monitor.core.discovery import Found
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.sources import RunSource, open_source, source_kind

PARALLEL_MIN_BYTES = 16 << 20  # total backlog below which a pool costs more than it saves
RUN_MIN_BYTES = 1 << 20  # smaller runs are read in-process while the workers work
MAX_WORKERS = 8


def backlog_bytes(f: Found) -> int:
    return source_kind(f.source).backlog_bytes(f.path)


def load_run(f: Found, root: str | None) -> tuple[RunState, RunSource]:
    """Read one run completely (in a worker process); generation is set by the caller."""
    state = RunState(f.id, f.path, f.source, 0)
    source = open_source(f.source, f.path, root)
    lock = threading.Lock()
    while True:
        changed, reset = source.poll(state, lock)
        if not reset:
            break
        state = RunState(f.id, f.path, f.source, 0)
        source = open_source(f.source, f.path, root)
    for table in (state.train, state.eval, state.progress):
        table.compact()
    return state, source


def plan(found: Iterable[Found]) -> list[Found]:
    """The runs worth sending to worker processes (empty: read everything in-process)."""
    big = [(f, n) for f in found if (n := backlog_bytes(f)) >= RUN_MIN_BYTES]
    if len(big) < 2 or (os.cpu_count() or 1) < 2:
        return []
    if sum(n for _, n in big) < PARALLEL_MIN_BYTES:
        return []
    big.sort(key=lambda fn: -fn[1])  # largest first: the pool finishes together
    return [f for f, _ in big]


def load_all(runs: list[Found], root: str | None) -> dict[str, tuple[RunState, RunSource]]:
    """Load runs in worker processes: one per core, each reading a share of the runs.

    Workers are plain `python -m mudpuppy_monitor.core.prefetch` processes rather than a
    multiprocessing pool: spawn would re-import the caller's `__main__` (a user script without
    a main guard would run again in every worker), and fork would copy a process that has threads.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    width = max(1, min(os.cpu_count() or 1, len(runs), MAX_WORKERS))
    shares: list[list[Found]] = [[] for _ in range(width)]
    for i, f in enumerate(runs):  # largest first, dealt round-robin: shares of similar size
        shares[i % width].append(f)
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    out: dict[str, tuple[RunState, RunSource]] = {}
    try:
        for share in shares:
            sink = tempfile.TemporaryFile()
            proc = subprocess.Popen(
                [sys.executable, "-m", "mudpuppy_monitor.core.prefetch"],
                stdin=subprocess.PIPE,
                stdout=sink,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            started.append((proc, sink))
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps((share, root)))
            proc.stdin.close()
        for proc, sink in started:
            if proc.wait() != 0:
                raise RuntimeError(f"a loading worker exited with {proc.returncode}")
            sink.seek(0)
            out.update(pickle.load(sink))
    finally:
        for proc, sink in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sink.close()
    return out


def _worker() -> None:
    share, root = pickle.loads(sys.stdin.buffer.read())
    result = {f.id: load_run(f, root) for f in share}
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _worker()
