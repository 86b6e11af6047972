"""The registry of the kinds of run directory the daemon reads, in priority order: when a
directory holds the files of several, the first that claims it wins (native, then LLaMA-Factory,
then HF Trainer)."""

from __future__ import annotations

from mudpuppy_monitor.core.sources import hf, llamafactory, native
from mudpuppy_monitor.core.sources.base import Listing, RunSource, SourceKind

SOURCES: tuple[SourceKind, ...] = (native.SOURCE, llamafactory.SOURCE, hf.SOURCE)

__all__ = [
    "SOURCES",
    "Listing",
    "RunSource",
    "SourceKind",
    "classify",
    "open_source",
    "source_kind",
]


def classify(listing: Listing) -> SourceKind | None:
    """The kind of run `listing` holds, or None when it is not a run directory."""
    for source in SOURCES:
        if source.claims(listing):
            return source
    return None


def source_kind(kind: str) -> SourceKind:
    for source in SOURCES:
        if source.kind == kind:
            return source
    raise ValueError(f"unknown source {kind!r}")


def open_source(kind: str, path: str, root: str | None) -> RunSource:
    """The reader for one run directory of the given kind."""
    return source_kind(kind).open(path, root)
