"""The job's output: to the terminal unchanged, and into `output.log` as whole lines.

`LineSplitter` turns one stream's bytes into records (lines ending in `\\n`); `OutputLog` appends
records to `output.log`, capped and rotated once; `Tee` is the thread that reads the job's stdout
and stderr pipes and feeds both. The rules a reader relies on are in docs/run-format.md
(`output.log`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOG_FILE = "output.log"
ROTATED_FILE = "output.log.1"
MAX_LOG_BYTES = 64 << 20  # then output.log becomes output.log.1 (one older part is kept)
MAX_RECORD_BYTES = 64 << 10  # a longer line is split into records of at most this size
SNAPSHOT_EVERY_S = 1.0  # a line redrawn with \r (a progress bar) is logged at most this often
RETRY_EVERY_S = 5.0
READ_BYTES = 1 << 16
TICK_S = 0.25

CR, LF = 0x0D, 0x0A


def _utf8_cut(data: bytes | bytearray, limit: int) -> int:
    """A cut position <= limit that does not split a UTF-8 sequence (when the data is UTF-8)."""
    cut = limit
    for _ in range(3):
        if cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
    return cut if cut > 0 else limit


class LineSplitter:
    """One stream's bytes as output.log records, each ending in `\\n`.

    - A line is written when its `\\n` arrives; `\\r\\n` ends a line like `\\n`.
    - A `\\r` not followed by `\\n` means the program redrew the line (a progress bar): only what
      follows it is kept. The redrawn line itself is written at most once a second, as a record
      ending in `\\r\\n` (a snapshot: a viewer may let the next record replace it).
    - A line longer than `max_record` bytes is split into records of at most that size.
    - `flush()` at the end of the stream writes what is left, with a `\\n` added.
    """

    def __init__(
        self,
        *,
        max_record: int = MAX_RECORD_BYTES,
        snapshot_every_s: float = SNAPSHOT_EVERY_S,
    ) -> None:
        self.max_record = max_record
        self.snapshot_every_s = snapshot_every_s
        self._line = bytearray()
        self._cr = False  # the last byte seen was a \r whose meaning is not known yet
        self._snapshot_t = -float("inf")

    def feed(self, data: bytes, now: float) -> bytes:
        """The complete records `data` finishes (possibly none)."""
        out = bytearray()
        pos, n = 0, len(data)
        lf = -1  # the next \n at or after pos; n when there is none
        while pos < n:
            if self._cr:
                self._cr = False
                if data[pos] == LF:
                    self._end_line(out)
                    pos += 1
                    continue
                self._redrawn(out, now)
            if lf < pos:
                lf = data.find(b"\n", pos)
                if lf < 0:
                    lf = n
            cr = data.find(b"\r", pos, lf)
            if cr >= 0:
                self._add(data[pos:cr], out)
                self._cr = True
                pos = cr + 1
            else:
                self._add(data[pos:lf], out)
                if lf < n:
                    self._end_line(out)
                pos = lf + 1
        return bytes(out)

    def flush(self) -> bytes:
        """What is left at the end of the stream, as a last record (the line as it was seen)."""
        out = bytearray()
        self._cr = False
        if self._line:
            self._end_line(out)
        return bytes(out)

    def _add(self, piece: bytes, out: bytearray) -> None:
        self._line += piece
        while len(self._line) > self.max_record:
            cut = _utf8_cut(self._line, self.max_record)
            out += self._line[:cut] + b"\n"
            del self._line[:cut]

    def _end_line(self, out: bytearray) -> None:
        out += self._line + b"\n"
        self._line.clear()

    def _redrawn(self, out: bytearray, now: float) -> None:
        if self._line and now - self._snapshot_t >= self.snapshot_every_s:
            self._snapshot_t = now
            out += self._line + b"\r\n"
        self._line.clear()


def _say(message: str) -> None:
    print(f"mudpuppy-monitor: {message}", file=sys.stderr, flush=True)


class OutputLog:
    """`output.log` in one directory: whole records appended, capped at `max_bytes`.

    Before a write would pass the cap, `output.log` is renamed to `output.log.1` (replacing an
    older one) and a new `output.log` is started, so the last `max_bytes` at least are kept. An
    I/O error is reported once; records are then dropped and the file is reopened at most every
    5 s. `move_to` carries what was written into another directory (the run the job's Trainer
    chose) and continues there.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = MAX_LOG_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._retry_at = -float("inf")
        self._warned = False
        self.dropped_bytes = 0
        self._open()

    @property
    def path(self) -> Path:
        return self.dir / LOG_FILE

    def write(self, records: bytes) -> None:
        if not records:
            return
        if self._fd is None and not self._reopen():
            self.dropped_bytes += len(records)
            return
        try:
            if self._size and self._size + len(records) > self.max_bytes:
                self._rotate()
            assert self._fd is not None
            write_all(self._fd, records)
            self._size += len(records)
        except OSError as exc:
            self.dropped_bytes += len(records)
            self._failed(exc)

    def move_to(self, directory: Path) -> None:
        """Continue in `directory`, appending what was written here to its output.log."""
        if directory == self.dir:
            return
        old = self.dir
        self.close()
        self.dir = directory
        self._open()
        for name in (ROTATED_FILE, LOG_FILE):
            src = old / name
            try:
                self._append_file(src)
                src.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._failed(exc)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _append_file(self, src: Path) -> None:
        with open(src, "rb") as f:
            rest = b""
            while chunk := f.read(1 << 20):
                data = rest + chunk
                end = data.rfind(b"\n") + 1
                self.write(data[:end])
                rest = data[end:]
            if rest:  # the file ended inside a line (a launcher killed mid-write)
                self.write(rest + b"\n")

    def _open(self) -> None:
        try:
            self._fd = open_append(self.path)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            self.close()
            self._failed(exc)

    def _reopen(self) -> bool:
        if self._clock() < self._retry_at:
            return False
        self._open()
        return self._fd is not None

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, self.dir / ROTATED_FILE)
        self._fd = open_append(self.path)
        self._size = 0

    def _failed(self, exc: OSError) -> None:
        self.close()
        self._retry_at = self._clock() + RETRY_EVERY_S
        if not self._warned:
            self._warned = True
            _say(
                f"cannot write {self.path} ({exc.strerror or exc}); the terminal still gets it all"
            )


def open_append(path: Path) -> int:
    # O_RDWR: the partial-line guard reads the last byte through this descriptor
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            write_all(fd, b"\n")  # a torn last line stays alone
    except OSError:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # a terminal someone set non-blocking: wait until it drains
            selectors.DefaultSelector().select(0.05)
            continue
        view = view[n:]


class Tee(threading.Thread):
    """Reads the job's stdout and stderr pipes until they close; writes each chunk unchanged to
    the matching terminal stream and its whole lines to the log.

    `tick()` is called from this thread at least every 0.25 s (the hand-off check). After
    `finish(grace_s)` the thread stops at the pipes' end or after `grace_s`, whichever is first
    (a process the job left behind may hold the pipes open forever).
    """

    def __init__(
        self,
        pipes: list[tuple[int, int | None]],
        log: OutputLog,
        tick: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="mudpuppy-tee", daemon=True)
        self.pipes = pipes  # (pipe read fd, terminal fd or None)
        self.log = log
        self.tick = tick
        self._clock = clock
        self._stop_at: float | None = None
        self._lock = threading.Lock()
        self._failed = False

    def finish(self, grace_s: float) -> None:
        with self._lock:
            self._stop_at = self._clock() + grace_s
        self.join()

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        splitters = {}
        for fd, term in self.pipes:
            sel.register(fd, selectors.EVENT_READ, term)
            splitters[fd] = LineSplitter()
        dead_terms: set[int] = set()
        last_tick = self._clock()
        try:
            while sel.get_map():
                with self._lock:
                    stop_at = self._stop_at
                timeout = TICK_S
                if stop_at is not None:
                    timeout = min(timeout, stop_at - self._clock())
                    if timeout <= 0:
                        break
                for key, _ in sel.select(timeout):
                    fd, term = key.fd, key.data
                    try:
                        data = os.read(fd, READ_BYTES)
                    except OSError:
                        data = b""  # as good as closed
                    if not data:
                        sel.unregister(fd)
                        self._log(splitters[fd].flush())
                        continue
                    if term is not None and term not in dead_terms:
                        try:
                            write_all(term, data)
                        except OSError:  # the terminal went away: keep logging
                            dead_terms.add(term)
                    self._log(splitters[fd].feed(data, self._clock()))
                now = self._clock()
                if now - last_tick >= TICK_S:
                    last_tick = now
                    self._guarded(self.tick)
        finally:
            for key in list(sel.get_map().values()):
                self._log(splitters[key.fd].flush())
            sel.close()  # the pipes belong to the caller, who closes them

    def _log(self, records: bytes) -> None:
        if records:
            self._guarded(self.log.write, records)

    def _guarded(self, fn: Callable[..., None], *args: bytes) -> None:
        # The pipes must be drained whatever happens to the log, or the job would block on them.
        try:
            fn(*args)
        except Exception as exc:
            if not self._failed:
                self._failed = True
                _say(f"output.log: {exc!r}; the terminal still gets it all")
