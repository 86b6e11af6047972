"""`mudpuppy-monitor tui ROOT`: parse, validate, hand over to the live loop."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from mudpuppy_monitor.errors import UsageError, require_dir
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS


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
    parser.set_defaults(func=run)


def compile_filter(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"bad --filter regex {text!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    require_dir(args.root, "root")
    root = Path(args.root)
    if not math.isfinite(args.refresh) or args.refresh <= 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {args.refresh}")
    pattern = compile_filter(args.filter)
    from mudpuppy_monitor.tui.app import main_tui

    return main_tui(root, gpu=args.gpu, refresh_s=args.refresh, once=args.once, pattern=pattern)
