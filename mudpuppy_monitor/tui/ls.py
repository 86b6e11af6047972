"""`mudpuppy-monitor ls ROOT`: read every run once and print one table of them.

A terminal output like the live view: the same cell formats and status colours, run names
printed inert (no markup, no control characters).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mudpuppy_monitor.errors import require_dir

if TYPE_CHECKING:  # the parser is built for every command: Rich and numpy load when used
    from rich.table import Table

    from mudpuppy_monitor.core.summary import RunSummary

# (header, justify)
COLUMNS = (
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
)


def register(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser(
        "ls",
        help="a table of the runs under ROOT",
        description="Read every run under ROOT once and print a table of them.",
    )
    ls.add_argument("root", metavar="ROOT", help="directory holding the run directories")
    ls.set_defaults(func=cmd_ls)


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.console import Console

    require_dir(args.root, "root")
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
    console.print(ls_table(summaries))
    return 0


def ls_table(summaries: Sequence[RunSummary]) -> Table:
    """One row per run, in the order given (ages come from the summaries)."""
    from rich.markup import escape
    from rich.table import Table

    from mudpuppy_monitor.tui.formatting import clean, format_age, format_eta, format_number
    from mudpuppy_monitor.tui.render import STATUS_STYLES

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in COLUMNS:
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
            "-" if s.last_event_age_s is None else f"{format_age(s.last_event_age_s)} ago",
        )
    return table
