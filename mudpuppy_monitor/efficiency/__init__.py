"""Efficiency, live: MFU, J/token and kWh per run, from the runs (core) and the GPU samples (gpu).

This package sits above both and below the front ends (server, tui); docs/efficiency.md.
"""

from __future__ import annotations

from mudpuppy_monitor.efficiency.tracker import JPT_SERIES, MFU_SERIES, SERIES, EfficiencyTracker

__all__ = ["JPT_SERIES", "MFU_SERIES", "SERIES", "EfficiencyTracker"]
