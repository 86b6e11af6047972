"""A loaded native run as bytes and back: what a loading worker hands to the daemon, and what
the parse cache keeps on disk.

A snapshot is the run's RunState plus the position of its events tail, exactly as a reader left
them, so a run restored from one continues as if it had been read in this process. The numpy
columns are written as raw buffers after a small pickle of the rest (pickle protocol 5 with
out-of-band buffers): nothing is pickled column by column, and reading a snapshot back makes the
arrays views of one buffer, without another copy.

Layout: MAGIC, a u32 header length, the header (JSON: what the snapshot is of, see `Header`,
plus the pickle length, the buffer sizes and the crc32 of everything after the header), the
pickle, then the buffers, each 8-byte aligned from the start of the pickle. A snapshot whose
bytes after the header are not exactly those (cut short, grown, damaged: a machine that crashed
before the file reached the disk) is refused; the crc32 costs about 0.4 ms per MB to check.
Only the classes a snapshot holds are accepted when unpickling: a snapshot file that someone
else wrote can at worst fail to load, never run code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from mudpuppy_monitor import __version__
from mudpuppy_monitor.core.run import RunState

MAGIC = b"MPSNAP01"
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20
TAIL_FIELDS = ("identity", "offset", "partial", "skipping", "size", "mtime", "crc", "head_bytes")
# the globals a snapshot may name: the run model and numpy's array reconstruction
_ALLOWED = {
    ("mudpuppy_monitor.core.run", "RunState"),
    ("mudpuppy_monitor.core.store", "Table"),
    ("mudpuppy_monitor.core.store", "Column"),
    ("mudpuppy_monitor.core.store", "LoraStore"),
    ("mudpuppy_monitor.core.samples", "SampleStore"),
    ("mudpuppy_monitor.core.supersede", "Superseded"),
    ("array", "array"),
    ("array", "_array_reconstructor"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
}


class SnapshotError(Exception):
    """The bytes are not a usable snapshot (another version, cut short, foreign content)."""


@dataclass
class Header:
    """What a snapshot is of: the events file as it was read (identity, bytes consumed) and
    enough of its content to tell whether the file still starts with those bytes."""

    dev: int
    ino: int
    offset: int  # bytes of events.jsonl the state holds (the tail's offset)
    size: int  # the file's size when it was read
    mtime_ns: int
    ctime_ns: int
    quiet: bool  # unchanged for a while before it was read: equal stat means equal bytes
    head: str  # digest of the first bytes (see parsecache.HEAD_BYTES)
    crc: int  # crc32 of bytes 0..offset, as the reader consumed them
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise SnapshotError(f"a snapshot may not name {module}.{name}")
        return super().find_class(module, name)


def encode(header: Header, state: RunState, tail: Any, meta_key: Any) -> list[bytes | memoryview]:
    """The snapshot as pieces to write one after another (buffers are not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    tail_state = {k: getattr(tail, k) for k in TAIL_FIELDS}
    body = pickle.dumps((state, tail_state, meta_key), protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    data: list[bytes | memoryview] = [body]
    pos = len(body)  # buffers are aligned from the start of the pickle (read into one buffer)
    for raw in raws:
        pad = -pos % 8
        if pad:
            data.append(b"\0" * pad)
        data.append(raw)
        pos += pad + raw.nbytes
    crc = 0
    for piece in data:
        crc = zlib.crc32(piece, crc)
    meta = asdict(header)
    meta["pickle"] = len(body)
    meta["buffers"] = [r.nbytes for r in raws]
    meta["data_bytes"] = pos
    meta["body_crc"] = crc
    head = orjson.dumps(meta)
    return [MAGIC, _LEN.pack(len(head)), head, *data]


def read_header(f: io.BufferedIOBase) -> tuple[Header, dict[str, Any]]:
    """The header of a snapshot file (the file positioned at its start)."""
    lead = f.read(len(MAGIC) + _LEN.size)
    if len(lead) < len(MAGIC) + _LEN.size or lead[: len(MAGIC)] != MAGIC:
        raise SnapshotError("not a snapshot")
    (n,) = _LEN.unpack(lead[len(MAGIC) :])
    if n > MAX_HEADER:
        raise SnapshotError("snapshot header too large")
    raw = f.read(n)
    try:
        meta = orjson.loads(raw)
        fields = {k: meta[k] for k in Header.__dataclass_fields__}
        header = Header(**fields)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise SnapshotError(f"bad snapshot header: {exc}") from None
    if header.version != __version__:
        raise SnapshotError(f"a snapshot of version {header.version}")
    meta["_body_at"] = len(lead) + n
    return header, meta


def decode(path: str) -> tuple[Header, RunState, dict[str, Any], Any]:
    """(header, state, tail fields, meta key) from a snapshot file.

    The file is read into one writable buffer and the arrays are views of it.
    """
    with open(path, "rb") as f:
        header, meta = read_header(f)
        at = meta["_body_at"]
        size = os.fstat(f.fileno()).st_size
        # an uninitialised buffer: zero-filling 7 MB costs what reading it does
        data = np.empty(size - at, dtype=np.uint8).data
        if f.readinto(data) != len(data):
            raise SnapshotError("snapshot cut short")
    try:
        n_body = int(meta["pickle"])
        sizes = [int(s) for s in meta["buffers"]]
        n_data, body_crc = int(meta["data_bytes"]), int(meta["body_crc"])
    except (KeyError, TypeError, ValueError):
        raise SnapshotError("bad snapshot header") from None
    if len(data) != n_data:
        raise SnapshotError("snapshot cut short or grown")
    if zlib.crc32(data) != body_crc:
        raise SnapshotError("snapshot damaged (crc32)")
    view = memoryview(data)
    pos = n_body
    bufs = []
    for s in sizes:
        pos += -pos % 8
        if pos + s > len(data):
            raise SnapshotError("snapshot cut short")
        bufs.append(view[pos : pos + s])
        pos += s
    try:
        state, tail, meta_key = _Unpickler(io.BytesIO(view[:n_body]), buffers=bufs).load()
    except SnapshotError:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage is one answer: not usable
        raise SnapshotError(f"snapshot does not load: {type(exc).__name__}") from None
    if not isinstance(state, RunState) or not isinstance(tail, dict):
        raise SnapshotError("not a run snapshot")
    if set(tail) != set(TAIL_FIELDS) or not _same_shape(state):
        raise SnapshotError("not a run snapshot of this code")
    return header, state, tail, meta_key


def _same_shape(state: RunState) -> bool:
    """Does the state have exactly the attributes this code's classes give (a snapshot of other
    code with the same version number would otherwise fail later, in a query)?"""
    fresh = RunState("", "", "", 0)
    if vars(state).keys() != vars(fresh).keys():
        return False
    for table in (state.train, state.eval, state.progress):
        if vars(table).keys() != vars(fresh.train).keys():
            return False
        for col in table.columns.values():
            if any(not hasattr(col, k) for k in type(col).__slots__):
                return False
    return vars(state.lora).keys() == vars(fresh.lora).keys()


def write(path: str, pieces: list[bytes | memoryview]) -> None:
    """Write a snapshot to `path` atomically: a temporary file beside it, then a rename."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{id(pieces):x}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in pieces:
                f.write(p)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
