"""`mudpuppy-monitor gpus`: one sample of every device, for both vendors."""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from typing import Any

from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS
from mudpuppy_monitor.gpu.base import GpuBackend, backend_json
from mudpuppy_monitor.gpu.records import GpuSample

GIB = 1024**3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="print one sample of every GPU (NVIDIA and AMD)",
        description="One sample of every GPU on this host, like a portable nvidia-smi.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--backend",
        choices=BACKEND_KINDS,
        default="auto",
        help="which library to use (default: auto = nvidia, then amd, then none)",
    )
    parser.add_argument(
        "--fake-devices",
        type=int,
        default=2,
        metavar="N",
        help="number of simulated devices for --backend fake (default 2)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mudpuppy_monitor.gpu.backends import open_backend

    if not 0 <= args.fake_devices <= 64:
        raise UsageError(f"--fake-devices must be between 0 and 64, got {args.fake_devices}")
    backend = open_backend(args.backend, fake_devices=args.fake_devices)
    try:
        if backend.kind == "none" and args.backend not in ("auto", "none"):
            raise UsageError(f"GPU backend unavailable: {backend.reason}")
        samples = backend.sample()
    finally:
        backend.close()
    if args.json:
        from mudpuppy_monitor.jsonutil import dumps

        print(dumps(to_json(backend, samples)).decode())
    else:
        print(format_table(backend, samples))
    return 0


def to_json(backend: GpuBackend, samples: Sequence[GpuSample]) -> dict[str, Any]:
    return {**backend_json(backend), "devices": [s.to_dict() for s in samples]}


# (header, justify, width): the device rows. The empty column is a spacer: two spaces after the
# index, one between the others.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("idx", "right", 3),
    ("", "left", 0),
    ("name", "left", 28),
    ("util", "right", 5),
    ("mem%", "right", 5),
    ("mem used/total GiB", "right", 18),
    ("temp", "right", 5),
    ("power/limit W", "right", 14),
    ("sm MHz", "right", 7),
    ("mem MHz", "right", 7),
    ("fan", "right", 5),
)


def _num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.1f}"


def device_rows(samples: Sequence[GpuSample]) -> list[str]:
    """The header and one line per device, laid out by a Rich table (no colour, no wrapping:
    a long name is cut at its column)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, header_style="")
    for header, justify, width in COLUMNS:
        table.add_column(header, justify=justify, width=width, no_wrap=True, overflow="crop")  # type: ignore[arg-type]
    for s in samples:
        cells = (
            str(s.index),
            "",
            s.name,
            _num(s.util_pct, "%"),
            _num(s.mem_util_pct, "%"),
            f"{_gib(s.mem_used_bytes)}/{_gib(s.mem_total_bytes)}",
            _num(s.temperature_c, "C"),
            f"{_num(s.power_w, digits=1)}/{_num(s.power_limit_w)}",
            _num(s.sm_clock_mhz),
            _num(s.mem_clock_mhz),
            _num(s.fan_pct, "%"),
        )
        table.add_row(*(Text(c) for c in cells))
    width = sum(w for _, _, w in COLUMNS) + len(COLUMNS) - 1
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False).print(table)
    return out.getvalue().splitlines()


def format_table(backend: GpuBackend, samples: Sequence[GpuSample]) -> str:
    if backend.kind == "none":
        return f"no GPU: {backend.reason}"
    lines = []
    if backend.simulated:
        lines.append("SIMULATED GPUs (fake backend): these are not real devices")
    lines.append(f"backend: {backend.name}: {backend.reason}")
    header, *rows = device_rows(samples)
    lines.append(header)
    for s, row in zip(samples, rows, strict=True):
        lines.append(row)
        lines.append(f"     uuid {s.uuid}")
        for p in s.processes:
            used = "?" if p.used_bytes is None else f"{p.used_bytes / GIB:.2f} GiB"
            lines.append(f"     pid {p.pid:<8} {used}")
    if not samples:
        lines.append("(no devices)")
    return "\n".join(lines)
