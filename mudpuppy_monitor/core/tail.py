"""Follow one append-only file: byte offset, complete lines only, truncation and replacement.

`FileTail.read()` is called whenever the file may have changed (a watch hint or the periodic stat
pass). It opens the file, reads from the saved offset in chunks, and hands back whole lines in
blocks (one block per chunk, so a caller can decode a block at a time). The bytes after the last
newline stay in `partial` until their newline arrives; a line that grows past `max_line` is
dropped while it streams by (never held in memory) and counted as one bad line. The file is not
kept open between calls, so thousands of runs cost no file descriptors.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
from mudpuppy_callback import MAX_LINE_BYTES

from mudpuppy_monitor.core.files import Refused, describe, open_regular

CHUNK_BYTES = 1 << 20
HEAD_BYTES = 4096  # the first bytes kept while tracking (the parse cache's first check)
# a backlog is decoded and stored slice by slice: the Python objects of one slice are freed
# before the next is read, which keeps the heap (and the RSS it leaves behind) small
READ_SLICE_BYTES = 8 << 20


@dataclass
class ReadResult:
    blocks: list[bytes]  # each holds whole lines, newline-terminated
    reset: bool = False  # truncated or replaced: what came before is stale; blocks start at 0
    skipped: int = 0  # lines dropped for being longer than max_line
    error: str | None = None  # why the file could not be read (permission, symlink out of root)


class FileTail:
    def __init__(self, path: str, root: str | None = None, max_line: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.root = root
        self.max_line = max_line
        self.identity: tuple[int, int] | None = None
        self.offset = 0
        self.partial = b""
        self.skipping = False  # inside an over-long line: drop bytes until its newline
        self.size = 0
        self.mtime = 0.0
        self.stat_key: tuple[int, int, int] | None = (
            None  # (size, mtime_ns, ctime_ns) at the last read
        )
        # while tracking (see track()): the crc32 of every byte consumed since offset 0, and
        # the first HEAD_BYTES of them; what the parse cache checks a file against
        self.crc: int | None = None
        self.head_bytes = b""

    def track(self) -> None:
        """Keep the crc32 of the bytes consumed from now on (only from the start of the file)."""
        if self.offset == 0:
            self.crc = 0
            self.head_bytes = b""

    def reset_position(self) -> None:
        self.offset = 0
        self.partial = b""
        self.skipping = False
        if self.crc is not None:
            self.crc = 0
            self.head_bytes = b""

    def changed(self) -> bool:
        """Cheap check (one stat): might read() find something new, a reset or an error?"""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self.identity is not None
        except OSError:
            return True  # a symlink loop, no permission ...: read() reports it
        return (st.st_dev, st.st_ino) != self.identity or st.st_size != self.offset

    def read(self, max_bytes: int | None = None) -> ReadResult:
        """Read what was appended since the last call (at most about `max_bytes` of it)."""
        result = ReadResult(blocks=[])
        try:
            fd, st = open_regular(self.path, self.root)
        except FileNotFoundError:
            if self.identity is not None:
                # the file went away: what we had is stale
                self.identity = None
                self.reset_position()
                result.reset = True
            return result
        except (OSError, Refused) as exc:
            result.error = describe(self.path, exc)
            return result
        try:
            ident = (st.st_dev, st.st_ino)
            if self.identity is not None and (ident != self.identity or st.st_size < self.offset):
                # replaced (new inode) or truncated: start over from the beginning
                self.reset_position()
                result.reset = True
            self.identity = ident
            self.size = st.st_size
            self.mtime = st.st_mtime
            self.stat_key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if st.st_size == self.offset:
                return result
            os.lseek(fd, self.offset, os.SEEK_SET)
            budget = max_bytes
            for block in self._chunks(fd, result):
                result.blocks.append(block)
                if budget is not None:
                    budget -= len(block)
                    if budget <= 0:
                        break
        except OSError as exc:
            result.error = describe(self.path, exc)
        finally:
            os.close(fd)
        return result

    def _chunks(self, fd: int, result: ReadResult) -> Iterator[bytes]:
        while True:
            chunk = os.read(fd, CHUNK_BYTES)
            if not chunk:
                return
            if self.crc is not None:
                self.crc = zlib.crc32(chunk, self.crc)
                if len(self.head_bytes) < HEAD_BYTES:
                    self.head_bytes += chunk[: HEAD_BYTES - len(self.head_bytes)]
            self.offset += len(chunk)
            if self.skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                chunk = chunk[nl + 1 :]
                self.skipping = False
            buf = self.partial + chunk if self.partial else chunk
            end = buf.rfind(b"\n")
            if end < 0:
                self.partial = buf
            else:
                self.partial = buf[end + 1 :]
                block = buf[: end + 1]
                if len(block) > self.max_line:
                    block = self._drop_long(block, result)
                if block:
                    yield block
            if len(self.partial) > self.max_line:
                # an over-long line still being written: forget it, skip to its newline
                self.partial = b""
                self.skipping = True
                result.skipped += 1

    def _drop_long(self, block: bytes, result: ReadResult) -> bytes:
        """The block without its lines longer than max_line (only big blocks are checked)."""
        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if int(np.diff(ends, prepend=-1).max()) - 1 <= self.max_line:
            return block  # the usual case, decided without a Python loop over lines
        lines = block.split(b"\n")[:-1]
        keep = [line for line in lines if len(line) <= self.max_line]
        result.skipped += len(lines) - len(keep)
        return b"".join(line + b"\n" for line in keep)


def poll_tail(
    tail: FileTail,
    errors: dict[str, str],
    key: str,
    lock: AbstractContextManager[Any],
    apply: Callable[[ReadResult], None],
) -> tuple[bool, bool]:
    """The read loop shared by the tailed sources (events.jsonl, trainer_log.jsonl).

    Reads slice by slice (READ_SLICE_BYTES), handing each to `apply` (which decodes it and stores
    the result under `lock`). A read error is kept in `errors[key]` and cleared by the next read
    that works. Returns (changed, reset: the run must start over).
    """
    if key not in errors and not tail.changed():
        # one stat instead of open + fstat + close: most runs of a poll pass have nothing new
        return False, False
    changed = False
    while True:
        res = tail.read(max_bytes=READ_SLICE_BYTES)
        if res.reset:
            return True, True
        if res.error:
            if errors.get(key) != res.error:
                with lock:
                    errors[key] = res.error
                changed = True
            return changed, False
        if key in errors:
            with lock:
                errors.pop(key, None)
            changed = True
        if not res.blocks and not res.skipped:
            return changed, False
        apply(res)
        changed = True
        if not res.blocks or tail.offset >= tail.size:
            return changed, False
