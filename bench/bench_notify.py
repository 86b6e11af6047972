"""Notifications must not cost freshness: line appended -> WebSocket message, with and without
three webhook channels, one of them a receiver that never answers.

The same workload, in one run, on the real `mudpuppy-monitor serve` (see bench_freshness):
metrics lines at 10 Hz per run, every 25th loss a spike, so that notifications keep flowing
(cooldown 0, no budget: every spike is one POST per channel; far more than the default limits
would let through). The channels are two local receivers that answer at once and one that holds
every request open; they run in a process of their own, so that answering POSTs does not slow
the process that timestamps the WebSocket messages. Each size is measured none / channels /
channels / none, so that a drift of the machine's load falls on both sides; the percentiles of
the two measurements of a side are pooled. The ratio with channels / without is the number to
watch (goal: 1.0, no change).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_freshness import measure_ours, pct
from tests.serverutil import REPO

SPIKE_EVERY = 25
# three receivers (tests/receiver.py) in their own process: prints their URLs, then, when its
# stdin closes, how many requests each got
RECEIVERS = """
import json, sys
from tests.receiver import Receiver
with Receiver() as a, Receiver() as b, Receiver(hold=True) as hang:
    print(json.dumps([a.url("/a/k-123456"), b.url("/b/k-123456"), hang.url()]), flush=True)
    sys.stdin.read()
    print(json.dumps([len(a.requests), len(b.requests), len(hang.requests)]), flush=True)
"""


class Receivers:
    def __enter__(self) -> Receivers:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVERS], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.urls: list[str] = json.loads(self.proc.stdout.readline())
        return self

    def counts(self) -> list[int]:
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(n_runs: int, seconds: float) -> dict[str, object]:
    with Receivers() as rx, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mudpuppy.toml"
        urls = ", ".join(f'"{u}"' for u in rx.urls)
        config.write_text(f"[notify]\nurls = [{urls}]\ncooldown = 0\nmax_per_run = 1000000\n")
        args = {"none": (), "channels": ("--config", str(config))}
        got: dict[str, list[np.ndarray]] = {"none": [], "channels": []}
        for side in ("none", "channels", "channels", "none"):
            # a backlog of 64 steps: the spike rule has its window from the first live line
            got[side].append(
                measure_ours(n_runs, seconds, args[side], spike_every=SPIKE_EVERY, backlog=64)
            )
        delivered_a, delivered_b, held = rx.counts()
    return {
        "none": np.concatenate(got["none"]),
        "channels": np.concatenate(got["channels"]),
        "delivered": delivered_a + delivered_b,
        "held": held,
    }


def run(quick: bool = False) -> list[dict]:
    seconds = 6.0 if quick else 15.0
    rows: list[dict] = []
    for n in (1,) if quick else (1, 20):
        got = measure(n, seconds)
        none, chan = got["none"], got["channels"]
        for q in (50, 99):
            base, with_ch = pct(none, q), pct(chan, q)  # type: ignore[arg-type]
            rows.append({
                "bench": "notify",
                "metric": f"append->ws p{q}, {n} run(s) at 10 Hz, 3 channels (1 hanging)",
                "value": round(with_ch, 1),
                "unit": "ms",
                "target": "ratio 1.0 (no change)",
                "compare": f"no channels {base:.1f} ms, ratio {with_ch / base:.2f}x "
                f"({got['delivered']} POSTs delivered to the 2 answering receivers, "
                f"{got['held']} held open by the hanging one)",
            })  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
