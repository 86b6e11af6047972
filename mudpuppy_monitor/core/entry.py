"""A run as the Monitor holds it, and how far the first read of a run still loading got."""

from __future__ import annotations

from dataclasses import dataclass, field

from mudpuppy_monitor.core.discovery import Found
from mudpuppy_monitor.core.prefetch import bytes_read
from mudpuppy_monitor.core.run import RunState
from mudpuppy_monitor.core.sources import RunSource

PROGRESS_EVERY_S = 0.5  # the least time between two published progress changes of a run


@dataclass
class Loading:
    """How far the first read of a run got: bytes of its events file read, of `total`."""

    total: int
    read: int = 0  # as its worker process last reported
    source: RunSource | None = None  # the reader of an in-process load: its position counts
    shown: int = -1  # bytes when last published
    shown_at: float = field(default=0.0)

    def bytes_read(self) -> int:
        got = self.read
        if self.source is not None:
            got = max(got, bytes_read(self.source))
        return got

    def as_dict(self) -> dict[str, int]:
        """`{"bytes": read, "total": size}` (the file may have grown past the size planned)."""
        got = self.bytes_read()
        return {"bytes": got, "total": max(self.total, got)}

    def due(self, now: float) -> bool:
        """Has it moved since it was last published, at least PROGRESS_EVERY_S ago? (If so, it
        counts as published now.)"""
        got = self.bytes_read()
        if got == self.shown or now - self.shown_at < PROGRESS_EVERY_S:
            return False
        self.shown, self.shown_at = got, now
        return True


@dataclass
class Entry:
    """A run as the Monitor holds it."""

    found: Found
    state: RunState
    source: RunSource
    cached: int = 0  # bytes of the events file the parse cache holds for this state
    loading: Loading | None = None  # a placeholder while its backlog loads
