"""Errors shared by every command; a leaf module, so any layer may raise them."""

from __future__ import annotations

import os


class UsageError(Exception):
    """An error the user caused: printed as one line, exit code 2."""


def require_dir(path: str, what: str) -> None:
    """Raise a UsageError unless `path` is an existing directory (`what` names it: "root")."""
    if not os.path.exists(path):
        raise UsageError(f"{what} not found: {path}")
    if not os.path.isdir(path):
        raise UsageError(f"{what} is not a directory: {path}")
