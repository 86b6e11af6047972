"""`mudpuppy-monitor demo`: several real tiny LoRA fine-tunes on CPU, served live.

Each trainer is a separate process (`python -m mudpuppy_monitor.tinytrain`): a random
Llama-style model with a peft LoRA adapter, synthetic tokens, `MonitorCallback`, no downloads.
The learning rates differ so the comparison is visible; the first run also evaluates and saves
checkpoints. The server runs in this process; Ctrl-C stops trainers and server.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS

HF_MODULES = ("torch", "transformers", "peft", "accelerate")
LEARNING_RATES = (3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run several tiny real LoRA fine-tunes on CPU and serve them live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root", default="demo-runs", help="where the runs are written (default: ./demo-runs)"
    )
    p.add_argument("--runs", type=int, default=3, help="number of concurrent fine-tunes (1-6)")
    p.add_argument("--steps", type=int, default=600, help="training steps per run")
    p.add_argument(
        "--step-delay",
        type=float,
        default=0.3,
        help="seconds added per step so a run lasts minutes",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5980)
    p.add_argument("--gpu", default="auto", choices=BACKEND_KINDS)
    p.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    p.set_defaults(func=cmd_demo)


@dataclass(frozen=True)
class DemoRun:
    name: str
    lr: float
    eval_every: int | None
    save_every: int | None


def plan_runs(count: int, steps: int) -> list[DemoRun]:
    """The runs of a demo: distinct learning rates; the first one evaluates and checkpoints."""
    if not 1 <= count <= len(LEARNING_RATES):
        raise UsageError(f"--runs must be between 1 and {len(LEARNING_RATES)}")
    if steps < 10:
        raise UsageError("--steps must be at least 10")
    runs = []
    for i, lr in enumerate(LEARNING_RATES[:count]):
        every = max(5, steps // 10) if i == 0 else None
        runs.append(DemoRun(name=f"lora-lr{lr:.0e}", lr=lr, eval_every=every, save_every=every))
    return runs


def missing_hf_modules() -> list[str]:
    return [m for m in HF_MODULES if importlib.util.find_spec(m) is None]


def trainer_command(run: DemoRun, root: Path, steps: int, step_delay: float) -> list[str]:
    cmd = [
        sys.executable, "-m", "mudpuppy_monitor.tinytrain",
        "--root", str(root), "--name", run.name,
        "--steps", str(steps), "--lr", str(run.lr),
        "--step-delay", str(step_delay),
    ]  # fmt: skip
    if run.eval_every:
        cmd += ["--eval-every", str(run.eval_every)]
    if run.save_every:
        cmd += ["--save-every", str(run.save_every)]
    return cmd


def start_trainers(
    runs: list[DemoRun], root: Path, steps: int, step_delay: float, log_dir: Path
) -> list[subprocess.Popen]:
    """One process per run; each one's output goes to log_dir/<name>.log (outside the root)."""
    env = dict(os.environ)
    # keep the demo's trainers from fighting over the few cores a laptop has
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    procs = []
    for run in runs:
        with open(log_dir / f"{run.name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    trainer_command(run, root, steps, step_delay),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Ctrl-C in the terminal reaches only us; we stop the trainers in order
                    start_new_session=True,
                )
            )
    return procs


def report_failures(procs: list[subprocess.Popen], runs: list[DemoRun], log_dir: Path) -> None:
    """Watch the trainers; one that fails says so with the end of its log, not silently."""
    pending = dict(zip(runs, procs, strict=True))
    while pending:
        for run, proc in list(pending.items()):
            code = proc.poll()
            if code is None:
                continue
            del pending[run]
            if code not in (0, -signal.SIGINT, -signal.SIGKILL):
                log = log_dir / f"{run.name}.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                print(f"demo: trainer {run.name} exited with code {code}; {log}:", file=sys.stderr)
                for line in tail:
                    print(f"  {line}", file=sys.stderr)
        time.sleep(0.5)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C: trainers first, no orphans


def stop_trainers(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGINT first (the writer records `interrupted`), then SIGKILL what does not exit."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cmd_demo(args: argparse.Namespace) -> int:
    missing = missing_hf_modules()
    if missing:
        raise UsageError(
            f"the demo needs the hf extra ({', '.join(missing)} not installed): "
            "pip install 'mudpuppy-monitor[hf]'"
        )
    from mudpuppy_monitor.server.cli import check_port, serve
    from mudpuppy_monitor.server.settings import Settings

    runs = plan_runs(args.runs, args.steps)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        root=root, host=args.host, port=args.port, gpu=args.gpu, open_browser=args.open
    )
    check_port(settings)  # fail before starting trainers
    print(f"demo: {len(runs)} LoRA fine-tunes on CPU, {args.steps} steps each, runs kept in {root}")
    for run in runs:
        extra = f", eval and checkpoint every {run.eval_every} steps" if run.eval_every else ""
        print(f"  {run.name}: learning rate {run.lr:g}{extra}")
    log_dir = Path(tempfile.mkdtemp(prefix="mudpuppy-demo-logs-"))
    print(f"  trainer logs: {log_dir}")
    signal.signal(signal.SIGTERM, _interrupt)
    procs = start_trainers(runs, root, args.steps, args.step_delay, log_dir)
    threading.Thread(target=report_failures, args=(procs, runs, log_dir), daemon=True).start()
    try:
        serve(settings)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the demo is meant to end
    finally:
        stop_trainers(procs)
        print(f"demo: stopped; the runs stay in {root} (mudpuppy-monitor serve {root})")
    return 0
