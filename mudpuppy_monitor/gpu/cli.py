"""`mudpuppy-monitor gpus`: one sample of every device, for both vendors."""

from __future__ import annotations

import argparse
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


def _num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.1f}"


def format_table(backend: GpuBackend, samples: Sequence[GpuSample]) -> str:
    if backend.kind == "none":
        return f"no GPU: {backend.reason}"
    lines = []
    if backend.simulated:
        lines.append("SIMULATED GPUs (fake backend): these are not real devices")
    lines.append(f"backend: {backend.name}: {backend.reason}")
    header = (
        f"{'idx':>3}  {'name':<28} {'util':>5} {'mem%':>5} {'mem used/total GiB':>18} "
        f"{'temp':>5} {'power/limit W':>14} {'sm MHz':>7} {'mem MHz':>7} {'fan':>5}"
    )
    lines.append(header)
    for s in samples:
        mem = f"{_gib(s.mem_used_bytes)}/{_gib(s.mem_total_bytes)}"
        power = f"{_num(s.power_w, digits=1)}/{_num(s.power_limit_w)}"
        lines.append(
            f"{s.index:>3}  {s.name[:28]:<28} {_num(s.util_pct, '%'):>5} "
            f"{_num(s.mem_util_pct, '%'):>5} {mem:>18} {_num(s.temperature_c, 'C'):>5} "
            f"{power:>14} {_num(s.sm_clock_mhz):>7} {_num(s.mem_clock_mhz):>7} "
            f"{_num(s.fan_pct, '%'):>5}"
        )
        lines.append(f"     uuid {s.uuid}")
        for p in s.processes:
            used = "?" if p.used_bytes is None else f"{p.used_bytes / GIB:.2f} GiB"
            lines.append(f"     pid {p.pid:<8} {used}")
    if not samples:
        lines.append("(no devices)")
    return "\n".join(lines)
