"""Start-up cost of `mudpuppy-monitor run -- CMD` against running CMD directly.

End to end, CMD is a script that only imports transformers (what every monitored job pays before
its first Trainer exists): `python job.py` against `mudpuppy-monitor run -- python job.py`,
interleaved round by round so that a machine's load drifts through both alike, medians compared.
Target: `run` adds less than 5 % of the direct time or 150 ms, whichever is larger.

An import of transformers takes seconds and swings by seconds on a busy machine, more than the
difference sought; so the two parts of that difference are also measured on their own, with many
more rounds of cheap commands:

- until the command starts: `run -- date +%s.%N` against `date +%s.%N`, each timed from just
  before the process is started to the time the command prints (what the launcher does before it
  forks: interpreter, argument parsing, run directory, the fork);
- for a job of one second: `run -- sleep 1` against `sleep 1` (the above, plus what the launcher
  does after the command ends, the end line; the writer, tee and signal imports run while the
  command runs);
- for a job that ends at once: `run -- true` against `true` (all of the launcher's own work);
- the startup hook in the job's interpreter: `python -c pass` with the hook on PYTHONPATH against
  without (the hook's cost does not depend on what the script imports, bar one string comparison
  per import).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from mudpuppy_monitor.launch.start import LaunchSettings, child_environment  # noqa: E402

SCRIPT = "import transformers\n"
Timing = tuple[float, float]  # wall ms, CPU ms


def _launcher() -> list[str]:
    console = Path(sys.executable).with_name("mudpuppy-monitor")  # what a user types
    return [str(console)] if console.exists() else [sys.executable, "-m", "mudpuppy_monitor"]


def _time(cmd: list[str], env: dict[str, str]) -> Timing:
    """(wall ms, CPU ms of the process and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000


def _until_start(cmd: list[str], env: dict[str, str]) -> Timing:
    """(ms from just before starting `cmd` to the time its command printed, CPU ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (float(out.split()[0]) - t0) * 1000, cpu * 1000


def _interleaved(ways: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, list[Timing]]:
    for way in ways.values():  # warm the page cache and the bytecode cache
        way()
    out: dict[str, list[Timing]] = {k: [] for k in ways}
    order = list(ways)
    for i in range(rounds):
        for name in order[i % len(order) :] + order[: i % len(order)]:
            out[name].append(ways[name]())
    return out


def _medians(timings: list[Timing]) -> Timing:
    return statistics.median(t[0] for t in timings), statistics.median(t[1] for t in timings)


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds, cheap_rounds = (3, 8) if quick else (7, 25)
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
        settings = LaunchSettings(command=tuple(py), root=root, name="unused")
        hook_env = child_environment(settings, attach=False, handoff=base / "handoff", environ=env)
        launched = [*_launcher(), "run", "--root", str(root), "--"]
        end_to_end = _interleaved(
            {
                "direct": lambda: _time(py, env),
                "run": lambda: _time([*launched, *py], env),
            },
            rounds,
        )
        date = ["date", "+%s.%N"]
        parts = _interleaved(
            {
                "date": lambda: _until_start(date, env),
                "run date": lambda: _until_start([*launched, *date], env),
                "sleep": lambda: _time(["sleep", "1"], env),
                "run sleep": lambda: _time([*launched, "sleep", "1"], env),
                "true": lambda: _time(["true"], env),
                "run true": lambda: _time([*launched, "true"], env),
                "pass": lambda: _time([sys.executable, "-c", "pass"], env),
                "pass hooked": lambda: _time([sys.executable, "-c", "pass"], hook_env),
            },
            cheap_rounds,
        )
    direct, under_run = _medians(end_to_end["direct"]), _medians(end_to_end["run"])
    date, run_date = _medians(parts["date"]), _medians(parts["run date"])
    sleep, run_sleep = _medians(parts["sleep"]), _medians(parts["run sleep"])
    true, run_true = _medians(parts["true"]), _medians(parts["run true"])
    bare, hooked = _medians(parts["pass"]), _medians(parts["pass hooked"])
    to_start_ms = run_date[0] - date[0]
    launcher_ms, hook_ms = run_sleep[0] - sleep[0], hooked[0] - bare[0]
    budget = max(0.05 * direct[0], 150.0)
    added = under_run[0] - direct[0]
    parts_sum = launcher_ms + hook_ms
    rows = [
        (
            "python job.py (imports transformers)",
            direct[0],
            "ms",
            "",
            f"median of {rounds}; CPU {direct[1]:.0f} ms",
        ),
        (
            "mudpuppy-monitor run -- python job.py",
            under_run[0],
            "ms",
            f"< direct + {budget:.0f} ms",
            f"ratio {under_run[0] / direct[0]:.3f}, +{added:.0f} ms; CPU {under_run[1]:.0f} ms "
            f"(+{under_run[1] - direct[1]:.0f})",
        ),
        (
            "added by run: launcher + hook (measured apart)",
            parts_sum,
            "ms",
            f"< {budget:.0f} ms",
            f"{'meets' if parts_sum < budget else 'misses'} the target; "
            f"ratio {(direct[0] + parts_sum) / direct[0]:.3f}",
        ),
        (
            "  launcher, a 1 s job: run -- sleep 1 vs sleep 1",
            launcher_ms,
            "ms",
            "",
            f"median of {cheap_rounds}: {run_sleep[0]:.0f} vs {sleep[0]:.0f} ms; "
            f"CPU +{run_sleep[1] - sleep[1]:.0f} ms",
        ),
        (
            "  of which until the command starts: run -- date",
            to_start_ms,
            "ms",
            "",
            f"median of {cheap_rounds}: {run_date[0]:.0f} vs {date[0]:.0f} ms from start to "
            "the command's first output",
        ),
        (
            "  a job that ends at once: run -- true vs true",
            run_true[0] - true[0],
            "ms",
            "",
            f"median of {cheap_rounds}: {run_true[0]:.0f} vs {true[0]:.0f} ms; "
            f"CPU +{run_true[1] - true[1]:.0f} ms (all of the launcher's work, nothing overlaps)",
        ),
        (
            "  startup hook: python -c pass with vs without",
            hook_ms,
            "ms",
            "",
            f"median of {cheap_rounds}: {hooked[0]:.0f} vs {bare[0]:.0f} ms; "
            f"CPU +{hooked[1] - bare[1]:.0f} ms",
        ),
    ]
    keys = ("metric", "value", "unit", "target", "compare")
    return [{"bench": "launch", **dict(zip(keys, row, strict=True))} for row in rows]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['metric']:<48} {row['value']:>9.1f} {row['unit']:<3} {row['compare']}")
