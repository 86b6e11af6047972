"""`mudpuppy-monitor run [--root runs] [--name N] [--lora-every K] [--serve [--port P] [--open] |
--tui] -- CMD ARGS...`

The usual command lines never reach this parser: `cli.main` hands them to `entry.main_fast`,
which reads the same options by hand so that the command starts sooner. This is the parser for
the rest (`--help`, abbreviated options, mistakes to explain), and both validate with
`start.settings_from`.
"""

from __future__ import annotations

import argparse
from typing import Any

from mudpuppy_monitor.launch.start import DEFAULT_PORT, default_name, script_stem

__all__ = ["cmd_run", "default_name", "register", "script_stem"]

DESCRIPTION = """\
Run CMD with the monitor injected: every transformers Trainer it builds (and every subclass:
TRL's, ...) records a run under ROOT, with no change to the script. Works through
`accelerate launch` and `torchrun` (rank 0 writes; one run per job). The command's output goes to
the terminal unchanged and into output.log in the run; its exit status ends the run and is
run's own exit status. A script without a Trainer still gets a run: its output and exit status.

  mudpuppy-monitor run -- python train.py --lr 1e-4
  mudpuppy-monitor run --name qwen-lora -- accelerate launch --num_processes 2 train.py
  mudpuppy-monitor run --serve --open -- python train.py     (the dashboard alongside)
  mudpuppy-monitor run --tui -- python train.py              (the terminal view alongside)

Run again with the same --name and a Trainer resumed from a checkpoint continues that run.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a training command with the monitor injected (no code change)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--root ROOT] [--name NAME] [--lora-every K] "
        "[--serve [--port P] [--open] | --tui] -- CMD [ARGS ...]",
    )
    p.add_argument("--root", default="runs", help="where runs are written (default: ./runs)")
    p.add_argument(
        "--name",
        default=None,
        help="run name (default: the script's name and the time, e.g. train-20250101-120000)",
    )
    p.add_argument(
        "--lora-every",
        default="50",
        metavar="K",
        help="LoRA adapter norms every K steps (0: off; default 50)",
    )
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--serve",
        action="store_true",
        help="serve the dashboard for ROOT alongside (as `serve`); it keeps serving the final "
        "state after CMD ends, until Ctrl-C",
    )
    view.add_argument(
        "--tui",
        action="store_true",
        help="show the terminal view alongside (CMD's output then goes to output.log only); it "
        "ends with CMD, leaving the final state on the screen",
    )
    p.add_argument(
        "--port", default=None, metavar="P", help=f"with --serve: the port (default {DEFAULT_PORT})"
    )
    p.add_argument("--open", action="store_true", help="with --serve: open it in a browser")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mudpuppy_monitor.launch.entry import launch
    from mudpuppy_monitor.launch.start import settings_from

    return launch(settings_from(vars(args)))
