"""Where the dashboard's files are: a leaf, so the server and the snapshot both find them."""

from __future__ import annotations

from pathlib import Path

import mudpuppy_monitor


def default_web_dir() -> Path:
    """The dashboard: inside the package when installed from a wheel, else the repo's web/."""
    package = Path(mudpuppy_monitor.__file__).resolve().parent
    installed = package / "web"
    if installed.is_dir():
        return installed
    return package.parent / "web"
