"""Dashboard redraw time in Chromium: 20 runs x 100,000 points overlaid on the loss chart.

The page is the real dashboard (web/), loaded by headless Debian chromium through Playwright.
Its HTTP API and WebSocket are answered from this process (Playwright routes), so the numbers
are the browser's alone: every run's full 100k-point series is handed over raw (no server-side
decimation), and the chart decimates per pixel on every draw. Timings are performance.now()
around each draw of the loss chart, read from the page's own ring buffer:

- zooming: 60 successive zoom windows, one per animation frame (no refetch: the data is raw);
- live: 100 ticks of one new point for every run, as `points` messages on the WebSocket;
- both again with smoothing on (the debiased EMA doubles the lines drawn).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from tests.browser import CHROMIUM, launched

WEB = Path(__file__).resolve().parent.parent / "web"
ORIGIN = "http://127.0.0.1:9"  # never contacted: every request is answered by a route
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
TARGET_MS = 16.0


def _series(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    x = np.arange(1, n + 1, dtype=np.float64)
    y = 0.8 + 2.0 * np.exp(-x / (n / 8 + k * n / 100)) + rng.normal(0, 0.04, n)
    y[rng.integers(0, n, 3)] += 3.0  # spikes the per-pixel min/max must keep
    return x, y


def _summary(run_id: str, n: int, t0: float) -> dict:
    return {
        "id": run_id, "name": run_id, "source": "native", "status": "running", "step": n,
        "max_steps": 2 * n, "epoch": 1.0, "num_train_epochs": 2, "loss": 0.9, "best_loss": 0.8,
        "eval_loss": None, "learning_rate": 1e-4, "grad_norm": 1.0, "steps_per_s": 10.0,
        "tokens_per_s": 20000.0, "eta_s": 1000.0, "elapsed_s": 1000.0, "started_t": t0,
        "last_event_t": t0 + n, "last_event_age_s": 0.1, "bad_lines": 0, "host": "bench",
        "pid": 1, "gpus": [], "error": None, "nonfinite": 0, "generation": 1,
    }  # fmt: skip


class FakeDaemon:
    """Answers the dashboard's requests with synthetic runs (docs/protocol.md shapes)."""

    def __init__(self, runs: int, points: int) -> None:
        self.n = points
        self.t0 = time.time() - points
        self.ids = [f"sweep/run-{k:02d}" for k in range(runs)]
        self.data = {rid: _series(k, points) for k, rid in enumerate(self.ids)}
        self.ws = None

    def columns(self, rid: str, lo: float | None, hi: float | None) -> dict:
        """Every raw point of a run's loss in [lo, hi] (the page asks; this server never thins)."""
        x, y = self.data[rid]
        m = (x >= (-math.inf if lo is None else lo)) & (x <= (math.inf if hi is None else hi))
        return {
            "loss": {"x": x[m].tolist(), "y": y[m].tolist(), "count": self.n, "decimated": False}
        }

    def handle(self, route) -> None:
        url = urlsplit(route.request.url)
        path = url.path
        if not path.startswith("/api/"):
            f = WEB / (path.lstrip("/") or "index.html")
            if not f.is_file():
                route.fulfill(status=404, body="")
                return
            route.fulfill(
                body=f.read_bytes(), content_type=TYPES.get(f.suffix, "application/octet-stream")
            )
            return
        if path == "/api/gpus":
            body = {
                "backend": "none",
                "simulated": False,
                "reason": "bench",
                "devices": [],
                "history": {},
                "attribution": {},
            }
        elif path == "/api/runs":
            body = {"runs": [_summary(r, self.n, self.t0) for r in self.ids]}
        elif path == "/api/series":  # many runs at once, as the page loads them
            req = json.loads(route.request.post_data or "{}")
            lo, hi = req.get("from"), req.get("to")
            runs = [
                {"id": rid, "generation": 1, "series": self.columns(rid, lo, hi),
                 "markers": [], "lora_snapshots": 0}
                for rid in req.get("runs", []) if rid in self.data
            ]  # fmt: skip
            body = {"x": "step", "points": req.get("points", 2000), "runs": runs, "missing": []}
        elif path.endswith("/series"):
            rid = path[len("/api/runs/") : -len("/series")]
            q = parse_qs(url.query)
            lo = float(q["from"][0]) if "from" in q else None
            hi = float(q["to"][0]) if "to" in q else None
            body = {"run": rid, "generation": 1, "x": "step", "series": self.columns(rid, lo, hi)}
        elif path.endswith("/lora"):
            body = {"layers": [], "steps": [], "A": [], "B": [], "update": []}
        else:
            rid = path[len("/api/runs/") :]
            body = {
                "summary": _summary(rid, self.n, self.t0), "meta": {}, "source": "native",
                "series": ["loss"], "lora_layers": [], "bad_lines": 0, "markers": [],
            }  # fmt: skip
        route.fulfill(body=json.dumps(body), content_type="application/json")

    def on_ws(self, ws) -> None:
        self.ws = ws
        ws.on_message(lambda _msg: None)  # subscriptions: everything is sent anyway
        snap = {
            "type": "snapshot", "protocol": 1,
            "runs": [_summary(r, self.n, self.t0) for r in self.ids],
            "gpus": {"backend": "none", "simulated": False, "reason": "bench", "devices": [], "attribution": {}},
        }  # fmt: skip
        ws.send(json.dumps(snap))

    def tick(self, i: int) -> None:
        """One new point for every run (index n + i)."""
        step = self.n + i + 1
        for k, rid in enumerate(self.ids):
            y = 0.8 + 0.05 * math.sin(step / 10 + k)
            msg = {
                "type": "points", "run": rid, "generation": 1,
                "series": {"loss": {"i0": self.n + i, "step": [step], "t": [self.t0 + step], "y": [y]}},
            }  # fmt: skip
            self.ws.send(json.dumps(msg))


ZOOM_JS = """async (frames) => {
  const app = window.__mudpuppy.app;
  const ch = app.charts.get('loss');
  const start = ch.drawCount;
  const s = ch.state();
  const span = s.x1 - s.x0;
  for (let i = 0; i < frames; i++) {
    const f = 0.05 + 0.9 * (i / frames);          // from nearly everything down to 5 %
    const w = span * (1 - f);
    const mid = s.x0 + span * (0.3 + 0.4 * (i / frames));
    app.zoom(mid - w / 2, mid + w / 2);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  }
  app.resetZoom();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [start, ch.drawCount];
}"""

TIMES_JS = """([a, b]) => {
  const ch = window.__mudpuppy.app.charts.get('loss');
  const ring = ch.drawTimes, out = [];
  for (let i = Math.max(a, b - ring.length); i < b; i++) out.push(ring[i % ring.length]);
  return out;
}"""


def _stats(times: list[float]) -> tuple[float, float]:
    xs = sorted(times)
    return statistics.median(xs), xs[min(len(xs) - 1, int(math.ceil(0.95 * len(xs))) - 1)]


def measure(runs: int, points: int) -> dict[str, list[float]]:
    daemon = FakeDaemon(runs, points)
    out: dict[str, list[float]] = {}
    with launched() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.route(f"{ORIGIN}/**", daemon.handle)
        page.route_web_socket("ws://127.0.0.1:9/ws", daemon.on_ws)
        load0 = time.perf_counter()
        page.goto(f"{ORIGIN}/")
        page.wait_for_function(
            f"() => {{ const s = window.__mudpuppy && window.__mudpuppy.stats();"
            f" return s && s.pending === 0 && s.charts.loss.lines === {runs}"
            f" && s.charts.loss.series.every(x => x.n === {points}); }}",
            timeout=120_000,
        )
        out["load_s"] = [time.perf_counter() - load0]
        for smoothing in ("0", "0.6"):
            page.fill("#smoothing", smoothing)
            page.wait_for_timeout(300)
            tag = "" if smoothing == "0" else "_smoothed"
            span = page.evaluate(ZOOM_JS, 60)
            out[f"zoom{tag}"] = page.evaluate(TIMES_JS, span)
            before = page.evaluate("window.__mudpuppy.app.charts.get('loss').drawCount")
            base = 0 if not tag else 100
            for i in range(100):
                daemon.tick(base + i)
                page.wait_for_timeout(20)
            page.wait_for_timeout(200)
            after = page.evaluate("window.__mudpuppy.app.charts.get('loss').drawCount")
            out[f"live{tag}"] = page.evaluate(TIMES_JS, [before, after])
        held = page.evaluate("window.__mudpuppy.stats().charts.loss.series.map(s => s.n)")
        out["held_points"] = [float(sum(held))]
    return out


def run(quick: bool = False) -> list[dict]:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found (apt-get install chromium)")
    runs, points = (5, 20_000) if quick else (20, 100_000)
    got = measure(runs, points)
    # shared machines: the load next to the numbers says how much of a core the page had
    size = f"{runs} runs x {points:,} points, load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    rows = [
        {
            "bench": "dashboard", "metric": "initial load to first full draw", "value": got["load_s"][0],
            "unit": "s", "target": "", "compare": f"{size}, raw JSON over a mocked API",
        }
    ]  # fmt: skip
    for key, label in [
        ("zoom", "redraw while zooming"),
        ("live", "redraw while live points arrive"),
        ("zoom_smoothed", "redraw while zooming, smoothing 0.6"),
        ("live_smoothed", "redraw while live points arrive, smoothing 0.6"),
    ]:
        med, p95 = _stats(got[key])
        for name, v in (("median", med), ("p95", p95)):
            rows.append(
                {
                    "bench": "dashboard", "metric": f"{label} ({name})", "value": v, "unit": "ms",
                    "target": f"< {TARGET_MS:g} ms",
                    "compare": f"{size}; {len(got[key])} draws; {v / TARGET_MS:.2f}x the frame budget",
                }
            )  # fmt: skip
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['metric']:<52} {row['value']:>9.2f} {row['unit']:<3} {row['target']:<9} {row['compare']}"
        )
