"""A run's `output.log` (the job's stdout and stderr, written by `mudpuppy-monitor run`): its
last lines in memory, and the reader that tails the file.

Bounded memory whatever the job prints: `LogLines` keeps the last `KEEP_LINES` lines and at most
`KEEP_CHARS` characters of them, each line cut to `LINE_MAX_BYTES`; a reader that finds more
than `READ_WINDOW_BYTES` new bytes (attaching to a long log, or a job printing faster than the
daemon reads) starts that far from the end and says so in one line of its own. Lines are numbered
in the order the daemon read them (not the file's line numbers): a client holding lines up to
`end` asks for what follows. The file format and the writer's rules are in docs/run-format.md.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable
from typing import Any

from mudpuppy_monitor.core.files import Refused, open_regular
from mudpuppy_monitor.core.tail import FileTail
from mudpuppy_monitor.tracebacks import WINDOW_LINES, last_exception

LOG_FILE = "output.log"
ROTATED_FILE = "output.log.1"
KEEP_LINES = 1000
KEEP_CHARS = 256 << 10
LINE_MAX_BYTES = 4 << 10  # a longer line is cut and marked (the writer's records reach 64 KiB)
READ_WINDOW_BYTES = 4 << 20  # never more than this of a file is read in one pass
MAX_RECORD_BYTES = 1 << 20  # a longer record (not written by `run`) is skipped and counted


def cut_line(record: bytes, limit: int = LINE_MAX_BYTES) -> str:
    """One record as text: decoded with replacement, cut past `limit` bytes with a mark."""
    if len(record) <= limit:
        return record.decode("utf-8", "replace")
    cut = limit
    while cut > 0 and (record[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
        cut -= 1
    snapshot = record.endswith(b"\r")
    text = record[:cut].decode("utf-8", "replace") + f" … [{len(record) - cut:,} more bytes]"
    return text + "\r" if snapshot else text


class LogLines:
    """The last lines of one log; line `i` (0, 1, 2, ... as read) is `lines[i - first]`.

    A line ending in `\\r` is a progress-bar snapshot (see docs/run-format.md): viewers show it
    only while no other line follows it.
    """

    def __init__(self, keep_lines: int = KEEP_LINES, keep_chars: int = KEEP_CHARS) -> None:
        self.keep_lines = keep_lines
        self.keep_chars = keep_chars
        self.lines: deque[str] = deque()
        self.first = 0
        self.chars = 0
        self.skipped = 0  # records over MAX_RECORD_BYTES, never read
        self._error_key: int | None = None
        self._error: str | None = None

    @property
    def end(self) -> int:
        """The number of the next line to arrive."""
        return self.first + len(self.lines)

    def add(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.lines.append(line)
            self.chars += len(line)
        while len(self.lines) > 1 and (
            len(self.lines) > self.keep_lines or self.chars > self.keep_chars
        ):
            self.chars -= len(self.lines.popleft())
            self.first += 1

    def tail(self, n: int) -> tuple[int, list[str]]:
        """(number of the first line returned, the last `n` lines held)."""
        n = max(0, min(n, len(self.lines)))
        start = self.end - n
        return start, [self.lines[i] for i in range(len(self.lines) - n, len(self.lines))]

    def since(self, i: int, limit: int | None = None) -> tuple[int, list[str]]:
        """(i0, lines from line `i` on, or from the first held when `i` is older; at most the
        last `limit` of them)."""
        i0 = max(i, self.first)
        if limit is not None:
            i0 = max(i0, self.end - limit)
        if i0 >= self.end:
            return self.end, []
        k = i0 - self.first
        return i0, [self.lines[j] for j in range(k, len(self.lines))]

    def exception(self) -> str | None:
        """The exception line of a Python traceback among the last 100 lines, or None (cached
        until a line arrives)."""
        if self._error_key != self.end:
            self._error_key = self.end
            n = min(len(self.lines), WINDOW_LINES)
            self._error = last_exception(
                list(itertools.islice(self.lines, len(self.lines) - n, None))
            )
        return self._error

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_error_key", "_error")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._error_key = None
        self._error = None


class OutputTail:
    """Follows `output.log` of one run directory into a LogLines.

    A rotation (the writer renames `output.log` to `output.log.1` and starts a new file) is seen
    as a new inode: the rest of the old file is read from `output.log.1` when that is the file
    being followed, then the new file from its start. A truncated or replaced log goes on from the
    new file's start: the lines held stay (they were the job's output).
    """

    def __init__(self, run_dir: str, root: str | None) -> None:
        self.path = os.path.join(run_dir, LOG_FILE)
        self.rotated = os.path.join(run_dir, ROTATED_FILE)
        self.root = root
        self.tail = FileTail(self.path, root, max_line=MAX_RECORD_BYTES)
        self.error: str | None = None

    def poll(self) -> tuple[list[str], int, str | None] | None:
        """New lines (as text), records skipped, and the read error (None when read fine);
        None when nothing changed. The caller stores them under its lock."""
        tail = self.tail
        if self.error is None and not tail.changed():
            return None
        lines: list[str] = []
        skipped = 0
        if tail.identity is not None and self._replaced():
            lines += self._finish_rotated()
        self._skip_ahead(lines)
        res = tail.read(max_bytes=READ_WINDOW_BYTES * 2)
        error = res.error
        skipped += res.skipped
        for block in res.blocks:
            lines += [cut_line(r) for r in block.split(b"\n")[:-1]]
        if not lines and not skipped and error == self.error:
            return None
        self.error = error
        return lines, skipped, error

    def _replaced(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self.tail.identity

    def _finish_rotated(self) -> list[str]:
        """The lines of the followed file written after our last read, when it is now
        `output.log.1` (complete records only: the writer writes nothing more into it)."""
        tail = self.tail
        try:
            fd, st = open_regular(self.rotated, self.root)
        except (OSError, Refused):
            return []
        try:
            if (st.st_dev, st.st_ino) != tail.identity or st.st_size <= tail.offset:
                return []
            start = max(tail.offset, st.st_size - READ_WINDOW_BYTES)
            os.lseek(fd, start, os.SEEK_SET)
            data = os.read(fd, st.st_size - start)
        except OSError:
            return []
        finally:
            os.close(fd)
        out: list[str] = []
        if start > tail.offset:
            out.append(skipped_line(start - tail.offset))
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        elif tail.partial and not tail.skipping:
            data = tail.partial + data
        end = data.rfind(b"\n")
        out += [cut_line(r) for r in data[: end + 1].split(b"\n")[:-1]]
        # the new file is read from its start
        tail.identity = None
        tail.reset_position()
        return out

    def _skip_ahead(self, lines: list[str]) -> None:
        """More than the read window is waiting: only the end of it can be kept, so read from
        there (the first, possibly partial, record is dropped) and say what was left out."""
        tail = self.tail
        try:
            st = os.stat(self.path)
        except OSError:
            return
        same = tail.identity is None or (st.st_dev, st.st_ino) == tail.identity
        offset = tail.offset if same and st.st_size >= tail.offset else 0
        if st.st_size - offset <= READ_WINDOW_BYTES:
            return
        start = st.st_size - READ_WINDOW_BYTES
        lines.append(skipped_line(start - offset))
        tail.identity = (st.st_dev, st.st_ino)
        tail.offset = start
        tail.partial = b""
        tail.skipping = True  # up to the next newline: the rest of a record cut in two


def skipped_line(nbytes: int) -> str:
    return f"[mudpuppy-monitor: {nbytes:,} bytes of output not read; only the last part is kept]"
