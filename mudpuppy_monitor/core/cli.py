"""`mudpuppy-monitor ls ROOT` and `mudpuppy-monitor export RUN_DIR`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from mudpuppy_monitor.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser(
        "ls",
        help="a table of the runs under ROOT",
        description="Read every run under ROOT once and print a table of them.",
    )
    ls.add_argument("root", metavar="ROOT", help="directory holding the run directories")
    ls.set_defaults(func=cmd_ls)
    ex = subparsers.add_parser(
        "export",
        help="every point of one run, as CSV or JSON lines",
        description="Export one run directory at full fidelity (series, step, t, value).",
    )
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (csv)")
    ex.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    ex.set_defaults(func=cmd_export)


def _check_dir(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise UsageError(f"{what} not found: {path}")
    if not os.path.isdir(path):
        raise UsageError(f"{what} is not a directory: {path}")


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.console import Console

    _check_dir(args.root, "root")
    from mudpuppy_monitor.core.monitor import Monitor

    mon = Monitor(args.root)
    mon.refresh()
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped: do not squeeze the table to 80 columns
    summaries = mon.summaries()
    if not summaries:
        console.print(f"no runs under {args.root}")
        return 0
    console.print(runs_table(summaries, time.time()))
    return 0


def runs_table(summaries: list[Any], now: float) -> Any:
    from rich.markup import escape
    from rich.table import Table

    # the same cell formats and status colours as the terminal view
    from mudpuppy_monitor.tui.formatting import clean, format_age, format_eta, format_number
    from mudpuppy_monitor.tui.render import STATUS_STYLES

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("run", "left"),
        ("source", "left"),
        ("status", "left"),
        ("step/max", "right"),
        ("loss", "right"),
        ("best", "right"),
        ("eval loss", "right"),
        ("steps/s", "right"),
        ("ETA", "right"),
        ("last update", "right"),
    ):
        if name == "run":
            table.add_column(name, justify=justify, min_width=8, overflow="fold")  # type: ignore[arg-type]
        else:
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for s in summaries:
        step = "-" if s.step is None else str(s.step)
        if s.max_steps:
            step += f"/{s.max_steps}"
        status = f"[{STATUS_STYLES.get(s.status, '')}]{s.status}[/]"
        if s.bad_lines:
            status += f" [dim]({s.bad_lines} bad)[/]"
        table.add_row(
            escape(clean(s.id)),  # a run name must not style or control the terminal
            s.source,
            status,
            step,
            format_number(s.loss),
            format_number(s.best_loss),
            format_number(s.eval_loss),
            format_number(s.steps_per_s, 3),
            format_eta(s.eta_s),
            _ago(s.last_event_age_s, format_age),
        )
    return table


def _ago(seconds: float | None, format_age: Any) -> str:
    return "-" if seconds is None else f"{format_age(seconds)} ago"


def cmd_export(args: argparse.Namespace) -> int:
    _check_dir(args.run_dir, "run directory")
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
