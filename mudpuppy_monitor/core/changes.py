"""The async stream of run changes: one bounded mailbox per subscriber.

A subscriber that reads slowly never blocks the producer and never makes it queue without bound:
notices that arrive before it reads are merged into one pending `Changes`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Changes:
    added: frozenset[str] = field(default_factory=frozenset)
    updated: frozenset[str] = field(default_factory=frozenset)
    removed: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def merge(self, later: Changes) -> Changes:
        # a run removed and then added again within one batch is reported as added
        added = (self.added - later.removed) | later.added
        removed = (self.removed - later.added) | later.removed
        updated = (self.updated | later.updated) - removed - added
        return Changes(frozenset(added), frozenset(updated), frozenset(removed))

    def ids(self) -> set[str]:
        return set(self.added | self.updated | self.removed)


class Subscription:
    """An async iterator of Changes; created by `Monitor.subscribe()`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: Changes | None = None
        self._wake = asyncio.Event()
        self._closed = False

    def push(self, changes: Changes) -> None:
        """Called on the subscriber's loop (the producer uses call_soon_threadsafe)."""
        if self._closed:
            return
        self._pending = changes if self._pending is None else self._pending.merge(changes)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Changes:
        while True:
            if self._pending is not None:
                out, self._pending = self._pending, None
                self._wake.clear()
                return out
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        self.close()
