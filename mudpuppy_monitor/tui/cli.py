"""`mudpuppy-monitor tui ROOT`: parse, validate, hand over to the live loop."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from mudpuppy_monitor.config import add_arguments
from mudpuppy_monitor.errors import UsageError, optional_positive, require_dir
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS


class _Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tui",
        help="live terminal view of the runs under ROOT (no server needed)",
        description="Live terminal view: runs table, loss sparklines, GPUs, alerts. Ctrl-C exits.",
    )
    parser.add_argument("root", metavar="ROOT", help="directory holding the run directories")
    parser.add_argument("--gpu", choices=BACKEND_KINDS, default="auto", help="GPU backend")
    parser.add_argument(
        "--refresh", type=float, default=1.0, metavar="S", help="seconds between frames (1.0)"
    )
    parser.add_argument(
        "--once", action="store_true", help="print one snapshot and exit (no terminal needed)"
    )
    parser.add_argument("--filter", metavar="REGEX", help="show only runs whose name or id matches")
    parser.add_argument(
        "--bell",
        action="store_true",
        help="ring the terminal bell when a run fails, crashes, stalls, ends or logs its first NaN",
    )
    parser.add_argument(
        "--samples",
        metavar="RUN",
        help="show the generated samples of this run id (default: the most recently active "
        "shown run that has samples)",
    )
    parser.add_argument(
        "--diff",
        action="store_true",
        help="add a column per config key whose value differs between the runs shown",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        metavar="X",
        help="dense peak TFLOPS of one GPU, for MFU: replaces the built-in table",
    )
    parser.add_argument(
        "--log",
        metavar="RUN",
        help="show the output of this run (default: the most recently active run with output)",
    )
    add_arguments(parser, " for stall_after")
    parser.set_defaults(func=run)


def compile_filter(text: str | None, flag: str = "--filter") -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"bad {flag} regex {text!r}: {exc}") from None


def filter_runs(pattern: re.Pattern[str] | None, runs: Iterable[N]) -> list[N]:
    """The runs whose name or id the pattern finds (all when None), in the order given."""
    if pattern is None:
        return list(runs)
    return [r for r in runs if pattern.search(r.name) or pattern.search(r.id)]


def run(args: argparse.Namespace) -> int:
    require_dir(args.root, "root")
    root = Path(args.root)
    if not math.isfinite(args.refresh) or args.refresh <= 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {args.refresh}")
    pattern = compile_filter(args.filter)
    stall_after_s = stall_after_from(args.config, args.stall_after)
    peak = optional_positive(args.peak_tflops, "--peak-tflops")
    from mudpuppy_monitor.tui.app import main_tui

    return main_tui(
        root,
        gpu=args.gpu,
        refresh_s=args.refresh,
        once=args.once,
        pattern=pattern,
        bell=args.bell,
        stall_after_s=stall_after_s,
        samples_run=args.samples,
        diff=args.diff,
        peak_tflops=peak,
        log_run=args.log,
    )


def stall_after_from(config_path: str | None, flag: float | None) -> float | None:
    from mudpuppy_monitor.config import ConfigError, load_config, stall_after

    try:
        return stall_after(load_config(config_path), flag)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
