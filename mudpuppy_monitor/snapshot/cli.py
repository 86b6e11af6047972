"""`mudpuppy-monitor snapshot ROOT -o FILE.html`: the runs under ROOT as one HTML file that opens
anywhere, with no server and no network."""

from __future__ import annotations

import argparse
import math
import os

from mudpuppy_monitor.errors import UsageError, require_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "snapshot",
        help="write the runs under ROOT as one self-contained HTML file",
        description=(
            "Read the runs under ROOT once and write one HTML file holding their charts, "
            "table and LoRA heatmap (data embedded, decimated to fit the size budget), which "
            "opens from disk with no server and loads nothing from the network."
        ),
    )
    parser.add_argument("root", metavar="ROOT", help="directory holding the run directories")
    parser.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file")
    parser.add_argument("--runs", metavar="REGEX", help="only runs whose name or id matches")
    parser.add_argument(
        "--max-mb",
        type=float,
        default=5.0,
        metavar="MB",
        help="size budget of the file in megabytes (5); the resolution adapts to it",
    )
    parser.set_defaults(func=cmd_snapshot)


def cmd_snapshot(args: argparse.Namespace) -> int:
    require_dir(args.root, "root")
    if not math.isfinite(args.max_mb) or args.max_mb <= 0:
        raise UsageError(f"--max-mb must be a positive number, got {args.max_mb}")
    from mudpuppy_monitor.tui.cli import compile_filter, filter_runs

    pattern = compile_filter(args.runs, "--runs")
    from mudpuppy_monitor.core.monitor import Monitor
    from mudpuppy_monitor.snapshot.build import build_snapshot
    from mudpuppy_monitor.webdir import default_web_dir

    mon = Monitor(args.root)
    mon.refresh()
    ids = sorted(s.id for s in filter_runs(pattern, mon.summaries()))
    if not ids:
        what = f" matching /{args.runs}/" if pattern is not None else ""
        raise UsageError(f"no runs{what} under {args.root}")
    snap = build_snapshot(mon, ids, default_web_dir(), max_bytes=int(args.max_mb * 1e6))
    tmp = f"{args.output}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(snap.html)
        os.replace(tmp, args.output)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    mb = snap.size_bytes / 1e6
    note = f", {snap.points_per_series} points per series"
    print(f"wrote {args.output}: {snap.runs} run(s), {mb:.2f} MB{note}")
    if snap.size_bytes > args.max_mb * 1e6:
        print(f"note: over the {args.max_mb:g} MB budget at the lowest resolution")
    return 0
