"""Errors shared by every command; a leaf module, so any layer may raise them."""

from __future__ import annotations


class UsageError(Exception):
    """An error the user caused: printed as one line, exit code 2."""
