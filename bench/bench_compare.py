"""Compare and share: what a snapshot costs, and how fast the runs table renders.

- Snapshot: 20 runs x 100,000 steps x 4 logged scalars (format v1, as bench attach writes them,
  with a config per run), read by a Monitor, then `build_snapshot` for all of them: the build
  time (median of 3) next to the time the Monitor took to read the runs, the file size next to
  the run files it summarises and the 5 MB budget, and the time Chromium takes to open the file
  from disk and draw every run.
- Table: 500 runs (a sweep of configs) served by a real daemon, the dashboard open in Chromium
  with the runs table shown; the time of one table update (sort + the rows in view), and of the
  same with the style and layout it causes, for 500 runs and for 50 (the ratio shows how little
  the row count matters when only the rows in view exist).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.attach_data import write_native
from tests.browser import CHROMIUM, launched

BUDGET_MB = 5.0


def _config(k: int) -> dict:
    return {
        "lr": [1e-4, 3e-4, 1e-3, 3e-3][k % 4],
        "seed": k // 4,
        "model": {"name": "tiny-llama", "layers": 2},
        "lora": {"r": 8, "alpha": 16},
        "batch_size": 8,
    }


def _add_configs(root: Path) -> None:
    for k, d in enumerate(sorted(root.iterdir())):
        meta = json.loads((d / "meta.json").read_text())
        meta["config"] = _config(k)
        (d / "meta.json").write_text(json.dumps(meta))


def _open_snapshot(path: Path, runs: int) -> float:
    with launched() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri())
        page.wait_for_function(
            f"() => {{ const s = window.__mudpuppy && window.__mudpuppy.stats();"
            f" return s && s.pending === 0 && s.charts.loss.lines === {runs}; }}",
            timeout=120_000,
        )
        return time.perf_counter() - t0


def measure_snapshot(runs: int, steps: int) -> list[dict]:
    from mudpuppy_monitor.core import Monitor
    from mudpuppy_monitor.snapshot import build_snapshot
    from mudpuppy_monitor.webdir import default_web_dir

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        write_native(root, runs, steps)
        _add_configs(root)
        raw = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        t0 = time.perf_counter()
        mon = Monitor(root)
        mon.refresh()
        attach_s = time.perf_counter() - t0
        ids = sorted(mon.run_ids())
        times = []
        snap = None
        for _ in range(3):
            t0 = time.perf_counter()
            snap = build_snapshot(mon, ids, default_web_dir(), max_bytes=int(BUDGET_MB * 1e6))
            times.append(time.perf_counter() - t0)
        assert snap is not None
        out = Path(tmp) / "report.html"
        out.write_text(snap.html, encoding="utf-8")
        open_s = _open_snapshot(out, runs) if os.path.exists(CHROMIUM) else float("nan")
    size = f"{runs} runs x {steps:,} steps x 4 scalars, load avg {os.getloadavg()[0]:.1f}"
    build = statistics.median(times)
    mb = snap.size_bytes / 1e6
    rows.append(
        {
            "bench": "compare", "metric": "snapshot build (median of 3)", "value": build, "unit": "s",
            "target": "", "compare": f"{size}; reading the runs took {attach_s:.2f} s ({build / attach_s:.2f}x)",
        }
    )  # fmt: skip
    rows.append(
        {
            "bench": "compare", "metric": "snapshot size", "value": mb, "unit": "MB",
            "target": f"<= {BUDGET_MB:g} MB",
            "compare": f"run files {raw / 1e6:.0f} MB ({raw / snap.size_bytes:.0f}x smaller); "
            f"{snap.points_per_series} points per series",
        }
    )  # fmt: skip
    rows.append(
        {
            "bench": "compare", "metric": "snapshot opened from disk to every run drawn", "value": open_s,
            "unit": "s", "target": "", "compare": f"{size}, headless Chromium, file://",
        }
    )  # fmt: skip
    return rows


TABLE_JS = """async (n) => {
  const cmp = window.__mudpuppy.app.compare;
  const cols = ['best_loss', 'name', 'cfg:lr', 'step', 'elapsed_s'];
  const upd = [], lay = [];
  for (let i = 0; i < n; i++) {
    const col = cols[i % cols.length];
    const t0 = performance.now();
    cmp.table.setSort(col, i % 2 ? -1 : 1);
    cmp.renderTable();
    const t1 = performance.now();
    void document.body.offsetHeight;  // style and layout of what the update changed
    lay.push(performance.now() - t0);
    upd.push(t1 - t0);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  }
  return {upd, lay, dom: document.querySelectorAll('#runs-table .rt-row').length};
}"""


def measure_table(runs: int) -> dict:
    from tests.serverutil import LiveServer, RunDir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(runs):
            run = RunDir(root, f"sweep/run-{k:04d}", meta={"config": _config(k)})
            for s in range(1, 4):
                run.metrics(s, t=1e9 + s, loss=1.0 / (s + k % 7), learning_rate=1e-4)
            run.end("completed", step=3)
        with LiveServer(root) as server, launched() as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(server.url + "/")
            page.wait_for_function(
                f"() => {{ const s = window.__mudpuppy && window.__mudpuppy.stats();"
                f" return s && s.runs.length === {runs} && s.pending === 0; }}",
                timeout=300_000,
            )
            page.click("#table-toggle")
            page.wait_for_function(
                f"() => window.__mudpuppy.stats().compare.configRuns === {runs}", timeout=60_000
            )
            return page.evaluate(TABLE_JS, 30)


def _p(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(quick: bool = False) -> list[dict]:
    runs, steps = (5, 20_000) if quick else (20, 100_000)
    rows = measure_snapshot(runs, steps)
    if not os.path.exists(CHROMIUM):
        return rows
    big, small = (100, 10) if quick else (500, 50)
    got = {n: measure_table(n) for n in (small, big)}
    load = f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    for what, key in (
        ("table update: sort + rows in view", "upd"),
        ("table update + style and layout", "lay"),
    ):
        med_b, med_s = statistics.median(got[big][key]), statistics.median(got[small][key])
        rows.append(
            {
                "bench": "compare", "metric": f"{what}, {big} runs (median)", "value": med_b,
                "unit": "ms", "target": "< 16 ms",
                "compare": f"p95 {_p(got[big][key], 0.95):.1f} ms; {small} runs: median {med_s:.1f} ms "
                f"({med_b / med_s:.2f}x for {big // small}x the rows); "
                f"{got[big]['dom']} rows in the DOM; {load}",
            }
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['metric']:<52} {row['value']:>9.3f} {row['unit']:<3} {row['target']:<9} {row['compare']}"
        )
