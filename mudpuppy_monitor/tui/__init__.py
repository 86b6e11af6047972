"""The terminal view: a Rich live table over the run store and the GPU sampler."""

from __future__ import annotations

from mudpuppy_monitor.tui.formatting import format_age, format_eta, format_number, sparkline

__all__ = ["format_age", "format_eta", "format_number", "sparkline"]
