"""The `mudpuppy-monitor` command: parse, build settings, call one function.

Each subcommand lives with its concept: a module exposing `register(subparsers)` that adds its
parser and sets `func`. Those modules import their heavy dependencies inside the handler, so
`mudpuppy-monitor ls` never imports the web server.
"""

from __future__ import annotations

import sys

from mudpuppy_monitor import __version__
from mudpuppy_monitor.errors import UsageError

TYPE_CHECKING = False  # typing itself is not imported: start-up time of every job
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "main"]

# (module, purpose); order is the order shown in --help
COMMAND_MODULES: tuple[str, ...] = (
    "mudpuppy_monitor.server.cli",  # serve
    "mudpuppy_monitor.tui.cli",  # tui
    "mudpuppy_monitor.tui.ls",  # ls
    "mudpuppy_monitor.core.cli",  # export
    "mudpuppy_monitor.snapshot.cli",  # snapshot
    "mudpuppy_monitor.gpu.cli",  # gpus
    "mudpuppy_monitor.demo",  # demo
    "mudpuppy_monitor.launch.cli",  # run
)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="mudpuppy-monitor",
        description="Live monitor for fine-tuning runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("mudpuppy_monitor"):
                continue  # a command not built into this version
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        # every job waits for what runs before its command starts: no parser, no other command
        from mudpuppy_monitor.launch.entry import main_fast

        code = main_fast(argv[1:])
        if code is not None:
            return code
    fast = argv[:1] == ["run"]
    parser = build_parser(("mudpuppy_monitor.launch.cli",) if fast else COMMAND_MODULES)
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
