"""The parse cache: native runs as they were loaded, kept outside the runs root, so that attaching
again (a daemon restart) skips decoding what was read before.

One entry per events file, named by its (st_dev, st_ino), holding a snapshot (see snapshot.py):
the run's state after reading bytes 0..offset of the file, the crc32 of exactly those bytes (as
the reader consumed them), a digest of their first 4 KiB, and the file's size, mtime and ctime
when it was read. An entry is used only when the file still starts with those bytes:

- another identity (a replaced file), a size below `offset` (truncated), or other first bytes:
  not used;
- size, mtime and ctime all unchanged, and the file had been quiet for QUIET_S before it was
  read: used as it is (any later write changes the ctime, which no user can set; the quiet
  margin covers filesystems with coarse timestamps);
- anything else (appended, rewritten, touched): the crc32 of bytes 0..offset is computed again
  and must match; the run then reads only what follows `offset`.

Entries are written atomically (a temporary file beside the entry, then a rename), so daemons
sharing the directory never see half an entry; the last writer wins, and either entry is valid.
The directory is created private (0700); a directory that is not ours, or that others may write,
is not used. The daemon never writes inside the runs root: a cache directory there is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat as stat_mod
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from mudpuppy_monitor.core import snapshot
from mudpuppy_monitor.core.files import Refused, open_regular
from mudpuppy_monitor.core.run import RunState

log = logging.getLogger(__name__)

APP_DIR = "mudpuppy-monitor"
ENTRIES_DIR = "runs-v1"
HEAD_BYTES = 4096  # the first bytes whose digest is kept: a cheap first check
QUIET_S = 2.0
MIN_BYTES = 1 << 20  # runs smaller than this are read again rather than cached
MAX_AGE_S = 30 * 86400  # entries not written or used for this long are removed
CHUNK = 1 << 20
READ_AHEAD_THREADS = 2  # reading and crc32 release the GIL: the entries load beside the imports


class CacheUnusable(Exception):
    """The cache directory cannot be used; str() says why."""


def default_dir(environ: dict[str, str] | None = None) -> str:
    """$XDG_CACHE_HOME/mudpuppy-monitor, else ~/.cache/mudpuppy-monitor."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, APP_DIR)


def head_digest(data: bytes) -> str:
    return hashlib.blake2b(data[:HEAD_BYTES], digest_size=16).hexdigest()


def inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Early:
    """An entry decoded ahead of its lookup: the entry file read and its stat before the read."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.path: str | None = None
        self.key: tuple[int, int, int] | None = None
        self.got: Any = None


# events file -> the early read of its entry; shared by every ParseCache of the process (the
# daemon starts reading before it builds the Monitor that looks the entries up), each taken once
_early: dict[str, _Early] = {}
_early_lock = threading.Lock()


def _entry_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_ahead(entry_path: Any, jobs: list[tuple[str, _Early]]) -> None:
    for events_path, early in jobs:
        try:
            st = os.stat(events_path)
            path = entry_path(st.st_dev, st.st_ino)
            early.key = _entry_key(os.stat(path))
            early.path = path
            early.got = snapshot.decode(path)
        except Exception:  # noqa: BLE001 - no entry, or the lookup decodes it again and says why
            early.got = None
        finally:
            early.done.set()


def _take_early(events_path: str, path: str) -> Any:
    """The early decode of `events_path`'s entry when it was read from `path` and that is still
    the file that was read; None (decode it now) when there is none, it failed, or the entry
    was replaced since."""
    with _early_lock:
        early = _early.pop(events_path, None)
    if early is None or not early.done.wait(60) or early.path != path:
        return None
    try:
        if _entry_key(os.stat(path)) != early.key:
            return None
    except OSError:
        return None
    return early.got


def forget_early() -> None:
    """Drop the early reads no lookup took (runs gone before the first pass)."""
    with _early_lock:
        _early.clear()


@dataclass
class Restored:
    state: RunState
    tail: dict[str, Any]  # FileTail fields, the running crc included
    meta_key: Any
    offset: int


class ParseCache:
    def __init__(self, directory: str, clock: Any = time.time) -> None:
        self.base = os.path.abspath(directory)
        self.dir = os.path.join(self.base, ENTRIES_DIR)
        self.clock = clock

    @classmethod
    def open(cls, directory: str, root: str) -> ParseCache:
        """A usable cache in `directory` (created private when missing); CacheUnusable else."""
        if inside(directory, root):
            raise CacheUnusable(f"the cache directory {directory} is inside the runs root")
        cache = cls(directory)
        for d in (cache.base, cache.dir):
            try:
                os.makedirs(d, mode=0o700, exist_ok=True)
                st = os.stat(d)
            except OSError as exc:
                raise CacheUnusable(f"cannot use {d}: {exc.strerror}") from None
            if not stat_mod.S_ISDIR(st.st_mode):
                raise CacheUnusable(f"{d} is not a directory")
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                raise CacheUnusable(f"{d} is not private to this user")
        return cache

    def entry_path(self, dev: int, ino: int) -> str:
        return os.path.join(self.dir, f"{dev:x}-{ino:x}.snap")

    @classmethod
    def open_or_none(cls, directory: str | None, root: str, report: Any) -> ParseCache | None:
        """`open`, with an unusable directory reported (`report(reason)`) rather than raised."""
        if directory is None:
            return None
        try:
            return cls.open(directory, root)
        except CacheUnusable as exc:
            report(str(exc))
            return None

    # -- reading ------------------------------------------------------------------------

    def covered(self, events_path: str) -> int:
        """Bytes of the file an entry may hold (not checked yet: for planning only)."""
        try:
            st = os.stat(events_path)
            with open(self.entry_path(st.st_dev, st.st_ino), "rb") as f:
                header, _ = snapshot.read_header(f)
        except (OSError, snapshot.SnapshotError):
            return 0
        if (header.dev, header.ino) != (st.st_dev, st.st_ino) or st.st_size < header.offset:
            return 0
        return header.offset

    def read_ahead(self, events_paths: list[str]) -> None:
        """Start decoding the entries of these events files in background threads (all file
        access there too), for the lookups to come (the daemon's first pass). Each lookup
        still checks its entry against the file as it is then; an entry replaced meanwhile is
        decoded again."""
        jobs = []
        with _early_lock:
            for events_path in events_paths:
                if events_path not in _early:
                    _early[events_path] = early = _Early()
                    jobs.append((events_path, early))
        for i in range(min(READ_AHEAD_THREADS, len(jobs))):
            threading.Thread(
                target=_read_ahead,
                args=(self.entry_path, jobs[i::READ_AHEAD_THREADS]),
                name="mudpuppy-cache-read",
                daemon=True,
            ).start()

    def lookup(self, events_path: str, root: str | None) -> Restored | None:
        """The cached state of this events file, if it still holds; None otherwise."""
        try:
            fd, st = open_regular(events_path, root)
        except (OSError, Refused):
            return None
        try:
            path = self.entry_path(st.st_dev, st.st_ino)
            try:
                with open(path, "rb") as f:
                    header, _ = snapshot.read_header(f)
            except (OSError, snapshot.SnapshotError):
                return None
            if not self._holds(fd, st, header):
                return None
            try:
                _, state, tail, meta_key = _take_early(events_path, path) or snapshot.decode(path)
            except (OSError, snapshot.SnapshotError) as exc:
                log.debug("cache entry %s not used: %s", path, exc)
                return None
            if tail["identity"] != (st.st_dev, st.st_ino) or tail["offset"] != header.offset:
                return None
            if tail["crc"] != header.crc:
                return None
            try:
                os.utime(path)  # used: kept by the age-based clean-up
            except OSError:
                pass
            return Restored(state, tail, meta_key, header.offset)
        finally:
            os.close(fd)

    def _holds(self, fd: int, st: os.stat_result, h: snapshot.Header) -> bool:
        """Does the file still start with the bytes the entry was made from?"""
        if (st.st_dev, st.st_ino) != (h.dev, h.ino) or st.st_size < h.offset or h.offset <= 0:
            return False
        if head_digest(os.pread(fd, min(HEAD_BYTES, h.offset), 0)) != h.head:
            return False
        unchanged = (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (h.size, h.mtime_ns, h.ctime_ns)
        if unchanged and h.quiet:
            return True
        crc = 0
        pos = 0
        while pos < h.offset:
            chunk = os.pread(fd, min(CHUNK, h.offset - pos), pos)
            if not chunk:
                return False
            crc = zlib.crc32(chunk, crc)
            pos += len(chunk)
        return crc == h.crc

    # -- writing ------------------------------------------------------------------------

    def store(self, state: RunState, tail: Any, meta_key: Any) -> str | None:
        """Keep the state of a run whose tail tracked its crc (see FileTail.track); the entry's
        path when one was written, else None."""
        if tail.crc is None or tail.identity is None or tail.offset < MIN_BYTES or tail.skipping:
            return None
        if tail.stat_key is None:
            return None
        try:
            fd, st = open_regular(tail.path, tail.root)
        except (OSError, Refused):
            return None
        try:
            os.close(fd)
        except OSError:
            pass
        dev, ino = tail.identity
        if (st.st_dev, st.st_ino) != (dev, ino) or st.st_size < tail.offset:
            return None  # replaced or truncated since it was read: the next pass resets it
        read_key = tail.stat_key  # (size, mtime_ns, ctime_ns) of the read that ended the load
        now_key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        quiet = read_key == now_key and self.clock() - st.st_ctime_ns / 1e9 >= QUIET_S
        header = snapshot.Header(
            dev=dev,
            ino=ino,
            offset=tail.offset,
            size=read_key[0],
            mtime_ns=read_key[1],
            ctime_ns=read_key[2],
            quiet=quiet,
            head=head_digest(tail.head_bytes),
            crc=tail.crc,
        )
        path = self.entry_path(dev, ino)
        try:
            snapshot.write(path, snapshot.encode(header, state, tail, meta_key))
        except OSError as exc:
            log.warning("could not write the parse cache in %s: %s", self.dir, exc.strerror)
            return None
        return path

    def prune(self) -> int:
        """Remove entries (and stray temporary files) older than MAX_AGE_S; returns how many."""
        removed = 0
        cutoff = self.clock() - MAX_AGE_S
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0
        for name in names:
            path = os.path.join(self.dir, name)
            try:
                st = os.lstat(path)
                stale_tmp = name.endswith(".tmp") and st.st_mtime < self.clock() - 3600
                if stat_mod.S_ISREG(st.st_mode) and (st.st_mtime < cutoff or stale_tmp):
                    os.unlink(path)
                    removed += 1
            except OSError:
                continue
        return removed
