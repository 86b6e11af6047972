"""Start-up cost of `mudpuppy-monitor run -- CMD` against running CMD directly.

CMD is a script that only imports transformers (what every monitored job pays before its first
Trainer exists). Three ways, interleaved round by round so that a machine's load drifts through
all of them alike, medians compared:

- direct:   `python script.py`
- hook:     the same with the startup hook on PYTHONPATH (what the child pays)
- run:      `mudpuppy-monitor run -- python script.py` (the launcher, the hook, the tee, the run's
            meta.json and end line)

And the launcher alone around a command that is no Python: `run -- true` against `true`.
Target: `run` adds less than 5 % of the direct time or 150 ms, whichever is larger.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from mudpuppy_monitor.launch.job import LaunchSettings, child_environment  # noqa: E402

SCRIPT = "import transformers\n"


def _launcher() -> list[str]:
    console = Path(sys.executable).with_name("mudpuppy-monitor")  # what a user types
    return [str(console)] if console.exists() else [sys.executable, "-m", "mudpuppy_monitor"]


def _time(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="mudpuppy-bench-launch-") as tmp:
        base = Path(tmp)
        script = base / "job.py"
        script.write_text(SCRIPT)
        root = base / "runs"
        py = [sys.executable, str(script)]
        # As users meet it: with compiled bytecode cached (kept in a temporary prefix, so the
        # checkout stays clean, even where PYTHONDONTWRITEBYTECODE is set).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        settings = LaunchSettings(command=tuple(py), root=root, name="hook-only")
        hook_env = child_environment(settings, attach=False, handoff=base / "handoff", environ=env)
        launched = [*_launcher(), "run", "--root", str(root), "--"]
        ways = {
            "direct": lambda: _time(py, env),
            "hook": lambda: _time(py, hook_env),
            "run": lambda: _time([*launched, *py], env),
            "true": lambda: _time(["true"], env),
            "run true": lambda: _time([*launched, "true"], env),
        }
        for way in ways.values():  # warm the page cache and the bytecode cache
            way()
        walls: dict[str, list[float]] = {k: [] for k in ways}
        cpus: dict[str, list[float]] = {k: [] for k in ways}
        order = list(ways)
        for i in range(rounds):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                wall, cpu = ways[name]()
                walls[name].append(wall)
                cpus[name].append(cpu)
        runs_made = sum(1 for _ in root.iterdir())
    wall = {k: statistics.median(v) * 1000 for k, v in walls.items()}
    cpu = {k: statistics.median(v) * 1000 for k, v in cpus.items()}
    overhead = wall["run"] - wall["direct"]
    budget = max(0.05 * wall["direct"], 150.0)
    spread = json.dumps({k: [round(x * 1000) for x in v] for k, v in walls.items()})
    rows = [
        ("python script.py (import transformers), wall", wall["direct"], "ms", "", "direct"),
        (
            "same under mudpuppy-monitor run, wall",
            wall["run"],
            "ms",
            f"< direct + {budget:.0f} ms",
            f"ratio {wall['run'] / wall['direct']:.3f}; +{overhead:.0f} ms "
            f"({'meets' if overhead < budget else 'misses'} the target); {runs_made} runs written",
        ),
        (
            "run's added CPU time (all processes)",
            cpu["run"] - cpu["direct"],
            "ms",
            "",
            f"direct {cpu['direct']:.0f} ms CPU, under run {cpu['run']:.0f} ms: "
            f"ratio {cpu['run'] / cpu['direct']:.3f}",
        ),
        (
            "startup hook alone (in the job's interpreter)",
            wall["hook"] - wall["direct"],
            "ms",
            "",
            f"wall ratio {wall['hook'] / wall['direct']:.3f}; CPU +{cpu['hook'] - cpu['direct']:.0f} ms",
        ),
        (
            "launcher alone (run -- true vs true)",
            wall["run true"] - wall["true"],
            "ms",
            "",
            f"CPU +{cpu['run true'] - cpu['true']:.0f} ms; {rounds} rounds, wall ms per try: {spread}",
        ),
    ]
    keys = ("metric", "value", "unit", "target", "compare")
    return [{"bench": "launch", **dict(zip(keys, row, strict=True))} for row in rows]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['metric']:<48} {row['value']:>10.1f} {row['unit']:<4} {row['target']:<22} {row['compare']}"
        )
