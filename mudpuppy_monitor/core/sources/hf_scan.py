"""Reading a large `trainer_state.json` a few megabytes at a time.

The Trainer writes the file with `json.dumps(indent=2, sort_keys=True)`: each `log_history` row
opens with a line of four spaces and `{`, and the list closes with a line of two spaces and `]`.
A raw newline never stands inside a JSON string, so these lines are found with `bytes.find`
alone, and the rows are decoded a chunk at a time: memory stays at a chunk's worth of rows,
never a Python object for every row of a 200 MB file.

A later file that repeats the rows already read (the next checkpoint's state: the same rows, then
new ones) is recognised by a digest of those rows' bytes, and only the new rows are decoded.

A file in another layout (written by something else, or compact JSON) is not this module's:
`scan()` says so and the caller parses it whole.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mudpuppy_monitor.core.coerce import loads_lenient

ROWS_OPEN = b'\n  "log_history": ['
ROW_START = b"\n    {"
ROWS_CLOSE = b"\n  ]"
READ_BYTES = 4 << 20
HEAD_BYTES = 1 << 20  # the fields before log_history are short; a file without the list there
# within this many bytes is not in the Trainer's layout


class NotTrainerLayout(Exception):
    """The file is not laid out as the Trainer writes it: parse it whole instead."""


class PrefixChanged(Exception):
    """The rows read before are not the start of this file's rows: read the run again."""


@dataclass
class Progress:
    """What has been read of the rows: the `length` in bytes of the rows region read (ending right
    after a row's closing brace), the digest of exactly those bytes, and the rows they held."""

    length: int = 0
    digest: bytes = b""
    rows: int = 0


def _decode(chunk: bytes) -> list[Any]:
    """Rows from `,\\n    {...},\\n    {...}` (leading separators allowed)."""
    body = chunk.lstrip(b", \n\r\t")
    if not body:
        return []
    text = b"[" + body + b"]"
    try:
        # Python's json writes bare NaN/Infinity for a NaN loss: loads_lenient reads them too
        rows = loads_lenient(text)
    except ValueError as exc:
        raise NotTrainerLayout(f"a log_history chunk is not JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise NotTrainerLayout("log_history rows are not a list")
    return rows


def scan(
    fd: int,
    since: Progress,
    on_rows: Callable[[list[Any]], None],
    read_bytes: int | None = None,
) -> tuple[dict[str, Any], Progress]:
    """Read the open file `fd` from its start: hand every row after `since` to `on_rows` in
    order, a chunk at a time; return (every field but log_history, the new Progress).

    Raises NotTrainerLayout (parse the file whole instead) or PrefixChanged (the rows read
    before are not this file's first rows). The caller keeps `fd` and closes it.
    """
    stream = _Stream(fd, read_bytes or READ_BYTES)
    head = stream.read_until(ROWS_OPEN, HEAD_BYTES)
    if head is None:
        raise NotTrainerLayout("no log_history list where the Trainer puts it")
    prefix = head + ROWS_OPEN
    hasher = hashlib.blake2b(digest_size=16)
    done = 0  # bytes of the rows region consumed (always right after a row's "}")
    rows = 0
    skip = since.length
    for chunk, last in stream.rows():
        if skip:
            take = min(skip, len(chunk))
            hasher.update(chunk[:take])
            done += take
            skip -= take
            if skip == 0 and hasher.copy().digest() != since.digest:
                raise PrefixChanged("the rows already read differ from this file's first rows")
            chunk = chunk[take:]
            rows = since.rows
            if not chunk:
                if last and skip:
                    raise PrefixChanged("this file has fewer rows than were read before")
                continue
        hasher.update(chunk)
        done += len(chunk)
        decoded = _decode(chunk)
        rows += len(decoded)
        if decoded:
            on_rows(decoded)
    if skip:
        raise PrefixChanged("this file has fewer rows than were read before")
    tail = stream.rest()
    try:
        header = loads_lenient(prefix + tail)
    except ValueError as exc:
        raise NotTrainerLayout(f"the fields around log_history are not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise NotTrainerLayout("not a JSON object")
    header.pop("log_history", None)
    return header, Progress(done, hasher.digest(), rows)


class _Stream:
    """The file in reads of `read_bytes`; rows() yields the rows region in pieces that end right
    after a row's closing brace, then rest() is what follows the region (`\\n  ]` onwards)."""

    def __init__(self, fd: int, read_bytes: int) -> None:
        self.fd = fd
        self.read_bytes = read_bytes
        self.buf = b""
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        data = os.read(self.fd, self.read_bytes)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                head, self.buf = self.buf[:i], self.buf[i + len(marker) :]
                return head
            if len(self.buf) > limit or not self._more():
                return None

    def rows(self) -> Iterator[tuple[bytes, bool]]:
        """(piece, is_last) of the rows region."""
        while not self.buf and self._more():
            pass
        if self.buf.startswith(b"]"):  # an empty list stays on the key's line: `[],`
            yield b"", True
            return
        while True:
            end = self.buf.find(ROWS_CLOSE)
            if end >= 0:
                piece, self.buf = self.buf[:end], self.buf[end:]
                yield piece, True
                return
            # every row before the last row start is complete: cut right after its "}"
            cut = self.buf.rfind(ROW_START)
            if cut > 0:
                comma = self.buf.rfind(b",", 0, cut)
                if comma > 0:
                    piece, self.buf = self.buf[:comma], self.buf[comma:]
                    yield piece, False
            if not self._more():
                raise NotTrainerLayout("log_history is not closed")

    def rest(self) -> bytes:
        while self._more():
            pass
        return self.buf
