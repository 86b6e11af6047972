"""Notifications must not cost freshness: line appended -> WebSocket message, with and without
three webhook channels, one of them a receiver that never answers.

The same workload twice, in one run, on the real `mudpuppy-monitor serve` (see bench_freshness):
metrics lines at 10 Hz per run, every 25th loss a spike, so that notifications keep flowing
(cooldown 0, no budget: every spike is one POST per channel). The channels are two local
receivers that answer at once and one that holds every request open. The ratio of the
percentiles with channels to those without is the number to watch (goal: 1.0, no change).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.bench_freshness import measure_ours, pct
from tests.receiver import Receiver

SPIKE_EVERY = 25


def measure_pair(n_runs: int, seconds: float, channels_first: bool) -> dict[str, object]:
    with (
        Receiver() as a,
        Receiver() as b,
        Receiver(hold=True) as hang,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = Path(tmp) / "mudpuppy.toml"
        urls = ", ".join(f'"{u}"' for u in (a.url("/a/k-123456"), b.url("/b/k-123456"), hang.url()))
        config.write_text(f"[notify]\nurls = [{urls}]\ncooldown = 0\nmax_per_run = 1000000\n")
        with_args = ("--config", str(config))
        order = [("channels", with_args), ("none", ())]
        if not channels_first:
            order.reverse()
        out: dict[str, object] = {}
        for name, args in order:
            # a backlog of 64 steps: the spike rule has its window from the first live line
            out[name] = measure_ours(n_runs, seconds, args, spike_every=SPIKE_EVERY, backlog=64)
        out["delivered"] = len(a.requests) + len(b.requests)
        out["held"] = len(hang.requests)
    return out


def run(quick: bool = False) -> list[dict]:
    seconds = 6.0 if quick else 20.0
    rows: list[dict] = []
    sizes = (1,) if quick else (1, 20)
    for i, n in enumerate(sizes):
        got = measure_pair(n, seconds, channels_first=i % 2 == 1)  # alternate the order
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
