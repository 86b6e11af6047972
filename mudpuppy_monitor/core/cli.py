"""`mudpuppy-monitor export RUN_DIR`: every point of one run, as CSV or JSON lines.

(`ls`, a table for the terminal, lives with the terminal view: `tui/ls.py`.)
"""

from __future__ import annotations

import argparse
import os
import sys

from mudpuppy_monitor.errors import UsageError, require_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    ex = subparsers.add_parser(
        "export",
        help="every point of one run, as CSV or JSON lines",
        description="Export one run directory at full fidelity (series, step, t, value).",
    )
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (csv)")
    ex.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    ex.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    require_dir(args.run_dir, "run directory")
    from mudpuppy_monitor.core.monitor import Monitor

    mon = Monitor(args.run_dir)
    mon.refresh()
    ids = mon.run_ids()
    name = os.path.basename(os.path.abspath(args.run_dir))
    if ids != [name]:
        raise UsageError(
            f"not a run directory: {args.run_dir} (no meta.json, events.jsonl, "
            "trainer_log.jsonl or trainer_state.json)"
        )
    chunks = mon.export(name, args.format)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                for chunk in chunks:
                    f.write(chunk)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        return 0
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
    except BrokenPipeError:
        # `export ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
