"""What a source of runs provides: how it recognises a run directory, and its reader.

Each source module (native, llamafactory, hf) owns its file names and declares one `SourceKind`;
the registry (`core/sources/__init__.py`) lists them in priority order, and discovery, the
Monitor and the worker-process attach ask the registry, never a source by name.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from mudpuppy_monitor.core.run import RunState

# what a reader holds while it changes a RunState: the Monitor's lock, or a null context while
# a run nobody can query yet is loaded
Lock = AbstractContextManager[Any]


@dataclass(frozen=True)
class Listing:
    """One directory as discovery saw it: its file names and its visible subdirectories."""

    path: str
    files: frozenset[str]
    dirs: tuple[tuple[str, str], ...]  # (name, path), symlinks and hidden directories left out


class RunSource(Protocol):
    """The reader of one run directory. It keeps its own file positions between calls (a worker
    process that loaded a native run hands back its RunState and those positions)."""

    def poll(self, run: RunState, lock: Lock) -> tuple[bool, bool]:
        """Read what is new into `run`, changing it only while holding `lock`. Returns
        (changed, reset): reset means the files were truncated or replaced and the run must be
        read again from the start into a fresh RunState."""
        ...


def no_backlog(path: str) -> int:
    return 0


@dataclass(frozen=True)
class SourceKind:
    kind: str  # RunSummary.source: "native" | "llamafactory" | "hf-trainer-state"
    claims: Callable[[Listing], bool]  # does this directory hold a run of this kind?
    open: Callable[[str, str | None], RunSource]  # (run directory, resolved root) -> reader
    # bytes a first read would decode, when worth spreading over worker processes (0: never)
    backlog_bytes: Callable[[str], int] = no_backlog
