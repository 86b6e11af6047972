"""`mudpuppy-monitor run [--root runs] [--name N] [--lora-every K] -- CMD ARGS...`"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mudpuppy_monitor.errors import UsageError

DESCRIPTION = """\
Run CMD with the monitor injected: every transformers Trainer it builds (and every subclass:
TRL's, ...) records a run under ROOT, with no change to the script. Works through
`accelerate launch` and `torchrun` (rank 0 writes; one run per job). The command's output goes to
the terminal unchanged and into output.log in the run; its exit status ends the run and is
run's own exit status. A script without a Trainer still gets a run: its output and exit status.

  mudpuppy-monitor run -- python train.py --lr 1e-4
  mudpuppy-monitor run --name qwen-lora -- accelerate launch --num_processes 2 train.py

Run again with the same --name and a Trainer resumed from a checkpoint continues that run.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a training command with the monitor injected (no code change)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--root ROOT] [--name NAME] [--lora-every K] -- CMD [ARGS ...]",
    )
    p.add_argument("--root", default="runs", help="where runs are written (default: ./runs)")
    p.add_argument(
        "--name",
        default=None,
        help="run name (default: the script's name and the time, e.g. train-20250101-120000)",
    )
    p.add_argument(
        "--lora-every",
        type=int,
        default=50,
        metavar="K",
        help="LoRA adapter norms every K steps (0: off; default 50)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mudpuppy_callback import _check_name

    from mudpuppy_monitor.launch.job import LaunchSettings, run_job

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("nothing to run: give the command after --, e.g. run -- python train.py")
    if args.lora_every < 0:
        raise UsageError("--lora-every must be 0 (off) or a positive number of steps")
    name = args.name if args.name is not None else default_name(command)
    try:
        name = _check_name(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    root = Path(args.root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {root}: {exc.strerror or exc}") from None
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    settings = LaunchSettings(
        command=tuple(command), root=root, name=name, lora_every=args.lora_every
    )
    return run_job(settings)


def script_stem(command: Sequence[str]) -> str:
    """What the command runs, as a name: the first `.py` or `.sh` argument's stem, else the module
    after `-m`, else the program's own name."""
    for arg in command:
        if arg.endswith((".py", ".sh")):
            return Path(arg).stem
    for i, arg in enumerate(command[:-1]):
        if arg == "-m":
            return command[i + 1].rsplit(".", 1)[-1]
    return Path(command[0]).stem


def default_name(command: Sequence[str], now: float | None = None) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", script_stem(command)).strip("-.") or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
