"""The three kinds of run directory the daemon reads, mapped onto one RunState."""

from __future__ import annotations

NATIVE = "native"
HF_TRAINER_STATE = "hf-trainer-state"
LLAMAFACTORY = "llamafactory"


def open_source(kind: str, path: str, root: str | None):
    """The reader for one run directory of the given kind."""
    if kind == NATIVE:
        from mudpuppy_monitor.core.sources.native import NativeSource

        return NativeSource(path, root)
    if kind == LLAMAFACTORY:
        from mudpuppy_monitor.core.sources.llamafactory import LlamaFactorySource

        return LlamaFactorySource(path, root)
    if kind == HF_TRAINER_STATE:
        from mudpuppy_monitor.core.sources.hf import HfStateSource

        return HfStateSource(path, root)
    raise ValueError(f"unknown source {kind!r}")
