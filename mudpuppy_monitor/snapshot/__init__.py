"""Snapshots: one self-contained HTML file of runs (charts, table, LoRA heatmap), read-only.

`build_snapshot(runs, ids, web_dir)` is what both the `snapshot` command and the dashboard's
button (`GET /api/snapshot`) call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mudpuppy_monitor.snapshot.build import Snapshot, build_snapshot

__all__ = ["Snapshot", "build_snapshot"]


def __getattr__(name: str) -> Any:  # PEP 562: parsing the command line does not import numpy
    if name in __all__:
        from mudpuppy_monitor.snapshot import build

        return getattr(build, name)
    raise AttributeError(name)
