"""`make bench`: run every benchmark module and print one table.

Each `bench/bench_*.py` exposes `run(quick: bool = False) -> list[dict]` with rows
{"bench", "metric", "value", "unit", "target", "compare"}. A benchmark that fails is reported as
such and the others still run. `python -m bench --quick` uses the smaller sizes; `python -m bench
attach freshness` runs only those.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e6:
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.1f}"
        return f"{value:.3g}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {', '.join(discover())})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    names = args.names or discover()
    rows: list[dict] = []
    failed: list[str] = []
    for name in names:
        start = time.perf_counter()
        print(f"== bench {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            rows.extend(module.run(quick=args.quick))
        except Exception:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"== bench {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    table = Table(title="mudpuppy-monitor benchmarks" + (" (quick)" if args.quick else ""))
    for col in ("bench", "metric", "value", "unit", "target", "compare"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            *(
                _fmt(row.get(c, ""))
                for c in ("bench", "metric", "value", "unit", "target", "compare")
            )
        )
    Console(width=160).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
