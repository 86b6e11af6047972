"""The `mudpuppy-monitor` command: parse, build settings, call one function.

Each subcommand lives with its concept: a module exposing `register(subparsers)` that adds its
parser and sets `func`. Those modules import their heavy dependencies inside the handler, so
`mudpuppy-monitor ls` never imports the web server.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mudpuppy_monitor import __version__
from mudpuppy_monitor.errors import UsageError

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "main"]

# (module, purpose); order is the order shown in --help
COMMAND_MODULES: tuple[str, ...] = (
    "mudpuppy_monitor.server.cli",  # serve
    "mudpuppy_monitor.tui.cli",  # tui
    "mudpuppy_monitor.tui.ls",  # ls
    "mudpuppy_monitor.core.cli",  # export
    "mudpuppy_monitor.gpu.cli",  # gpus
    "mudpuppy_monitor.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mudpuppy-monitor",
        description="Live monitor for fine-tuning runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("mudpuppy_monitor"):
                continue  # a command not built into this version
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except UsageError as exc:
        print(f"mudpuppy-monitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
