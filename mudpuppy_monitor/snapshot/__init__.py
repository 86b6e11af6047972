"""Snapshots: one self-contained HTML file of runs (charts, table, LoRA heatmap), read-only.

`build_snapshot(runs, ids, web_dir)` is what both the `snapshot` command and the dashboard's
button (`GET /api/snapshot`) call.
"""

from __future__ import annotations

from mudpuppy_monitor.snapshot.build import Snapshot, build_snapshot

__all__ = ["Snapshot", "build_snapshot"]
