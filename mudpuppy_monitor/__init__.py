"""mudpuppy-monitor: the daemon side."""

__version__ = "0.1.0"
