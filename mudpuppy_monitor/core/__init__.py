"""The daemon core: discover runs, tail their files, keep them in a columnar store, know their status."""

from __future__ import annotations

from mudpuppy_monitor.core.changes import Changes
from mudpuppy_monitor.core.monitor import Monitor
from mudpuppy_monitor.core.summary import RunSummary

__all__ = ["Changes", "Monitor", "RunSummary"]
