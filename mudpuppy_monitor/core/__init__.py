"""The daemon core: discover runs, tail their files, keep them in a columnar store, know their status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mudpuppy_monitor.core.changes import Changes
    from mudpuppy_monitor.core.monitor import Monitor
    from mudpuppy_monitor.core.summary import RunSummary

__all__ = ["Changes", "Monitor", "RunSummary"]

_HOMES = {
    "Changes": "mudpuppy_monitor.core.changes",
    "Monitor": "mudpuppy_monitor.core.monitor",
    "RunSummary": "mudpuppy_monitor.core.summary",
}


def __getattr__(name: str) -> Any:
    # PEP 562: a loading worker (python -m mudpuppy_monitor.core.prefetch) imports only what
    # decoding needs, not the Monitor with asyncio and the file watcher
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
