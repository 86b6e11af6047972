"""Many runs in one tab: 2,000 and 10,000 runs x 200 steps, the real daemon and the real page.

The runs are real run directories (meta.json and events.jsonl, 200 `metrics` lines of loss,
learning rate and grad norm each, an `end` line); the daemon is `serve` in a process of its own;
the page is the dashboard in headless Debian chromium. Measured per size:

- the daemon's start (process spawned -> /healthz answers, every run read);
- from navigation to the run list shown (every run in the page's list) and to the charts drawn
  (every overlaid run's loss line on the chart, no load pending), read in the page from
  performance.now() (milliseconds since navigation start);
- HTTP requests the page made until then (static files included; the WebSocket is not one),
  and after 3 s more;
- sidebar rows in the DOM;
- at 2,000 runs, a click on `all` (every run overlaid): time to all lines drawn, requests made.

The same is measured for the dashboard before batched loading (web/ at BASELINE_REF, taken with
`git archive`; set BENCH_BASELINE_REF to another commit, or to "" to skip it) against the same
daemon and runs, as a user of that version met it: the daemon serves its dashboard from a
directory whose files are swapped between the two measurements. The old page overlays every run
and loads each with two requests, so it is given at most BASELINE_WAIT_S to draw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser import CHROMIUM, launched
from tests.conftest import find_free_port

REPO = Path(__file__).resolve().parent.parent
# the last dashboard that loaded each run with its own requests (0.1.0 with the hardening)
BASELINE_REF = "de12e0f"
# seconds the dashboard before batching is given to draw, by number of runs
BASELINE_WAIT_S = {2000: 360.0, 10_000: 120.0}
WAIT_S = 120.0
STEPS = 200
T0 = 1_700_000_000.0

SERVE = """
import sys
from pathlib import Path
from mudpuppy_monitor.server.cli import serve
from mudpuppy_monitor.server.settings import Settings
serve(Settings(root=Path(sys.argv[1]), port=int(sys.argv[2]), gpu="none", web_dir=Path(sys.argv[3])))
"""

# true once every overlaid run's loss line is drawn and no load is pending: the time since
# navigation start (ms). Reads the app directly: stats() would cost the page more than it
# measures at 2,000 lines.
DRAWN_JS = """() => {
  const app = window.__mudpuppy && window.__mudpuppy.app;
  if (!app || app.socket.state !== 'live') return false;
  const ids = app.overlaid();
  if (ids.length === 0) return false;
  for (const d of app.store.data.values()) if (d.loading) return false;
  const last = app.charts.get('loss').last;
  return last && last.lines >= ids.length ? performance.now() : false;
}"""
LISTED_JS = """(n) => {
  const app = window.__mudpuppy && window.__mudpuppy.app;
  return app && app.store.summaries.size === n ? performance.now() : false;
}"""


LINE = (
    '{"v": 1, "seq": %d, "t": %.1f, "kind": "metrics", "step": %d, "epoch": %.3f,'
    ' "values": {"loss": %.5f, "learning_rate": 0.0001, "grad_norm": %d}}\n'
)


def write_root(root: Path, runs: int) -> None:
    """`runs` finished runs of STEPS steps; run k's last event is at T0 + k (newest last)."""
    for k in range(runs):
        d = root / f"sweep-{k // 500:02d}" / f"run-{k:05d}"
        d.mkdir(parents=True)
        meta = {"format": "mudpuppy-run/1", "run_id": d.name, "name": d.name, "created": T0,
                "host": "bench", "max_steps": STEPS, "num_train_epochs": 1}  # fmt: skip
        (d / "meta.json").write_text(json.dumps(meta))
        t0 = T0 + k - STEPS
        lines = [json.dumps({"v": 1, "seq": 0, "t": t0, "kind": "start"}) + "\n"]
        for s in range(1, STEPS + 1):
            loss = 0.5 + 2.0 / (1 + s / (20 + k % 50))
            lines.append(LINE % (s, t0 + s, s, s / STEPS, loss, 1 + s % 7))
        end = {"v": 1, "seq": STEPS + 1, "t": T0 + k, "kind": "end", "step": STEPS}
        lines.append(json.dumps({**end, "status": "completed"}) + "\n")
        (d / "events.jsonl").write_text("".join(lines))


def baseline_web(dest: Path) -> Path | None:
    ref = os.environ.get("BENCH_BASELINE_REF", BASELINE_REF)
    if not ref:
        return None
    try:
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "web"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return dest / "web"


class Daemon:
    def __init__(self, root: Path, web: Path) -> None:
        self.port = find_free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(root), str(self.port), str(web)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 900  # 10,000 runs on a busy machine take minutes
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.1)
        self.start_s = time.perf_counter() - t0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def use_web(served: Path, web: Path) -> None:
    """Make `served` (the daemon's web directory, read at every request) hold `web`'s files."""
    for f in served.iterdir():
        f.unlink()
    for f in web.iterdir():
        if f.is_file():
            shutil.copyfile(f, served / f.name)


def measure_page(browser: Any, url: str, runs: int, wait_s: float, click_all: bool) -> dict:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    out: dict[str, Any] = {"listed_ms": None, "drawn_ms": None, "overlaid": None, "dom_rows": None}
    deadline = time.monotonic() + wait_s

    def left_ms() -> float:
        return max(1.0, deadline - time.monotonic()) * 1000

    try:
        page.goto(url + "/")
        try:
            listed = page.wait_for_function(LISTED_JS, arg=runs, polling=50, timeout=left_ms())
            out["listed_ms"] = listed.json_value()
            drawn = page.wait_for_function(DRAWN_JS, polling=50, timeout=left_ms())
            out["drawn_ms"] = drawn.json_value()
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: not drawn in time
            pass
        out["requests"] = len(requests)
        page.wait_for_timeout(3000)
        out["requests_later"] = len(requests)
        if out["drawn_ms"] is not None:  # a page still loading may not answer for minutes
            out["overlaid"] = page.evaluate("window.__mudpuppy.app.overlaid().length")
            out["dom_rows"] = page.evaluate("document.querySelectorAll('#run-list li').length")
        if click_all and out["drawn_ms"] is not None:
            before = len(requests)
            t0 = page.evaluate("performance.now()")
            page.click("#select-all")
            page.wait_for_function(
                f"() => window.__mudpuppy.app.overlaid().length === {runs} && ({DRAWN_JS})()",
                polling=50,
                timeout=wait_s * 1000,
            )
            out["all_ms"] = page.evaluate("performance.now()") - t0
            out["all_requests"] = len(requests) - before
    finally:
        ctx.close()
    return out


def _say(text: str) -> None:
    print(f"   manyruns: {text}", file=sys.stderr, flush=True)


def run(quick: bool = False) -> list[dict]:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found (apt-get install chromium)")
    sizes = (500, 2000) if quick else (2000, 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="mudpuppy-manyruns-"))
    rows: list[dict] = []
    try:
        old_web = baseline_web(tmp)
        served = tmp / "served"
        served.mkdir()
        with launched() as browser:
            for n in sizes:
                root = tmp / f"runs-{n}"
                t0 = time.perf_counter()
                write_root(root, n)
                _say(f"{n} runs written in {time.perf_counter() - t0:.0f} s")
                use_web(served, REPO / "web")
                daemon = Daemon(root, served)
                _say(f"daemon up in {daemon.start_s:.1f} s")
                try:
                    new = measure_page(browser, daemon.url, n, WAIT_S, click_all=n <= 2000)
                    _say(f"dashboard: {new}")
                    old = None
                    if old_web is not None and (not quick or n == sizes[0]):
                        use_web(served, old_web)
                        wait = BASELINE_WAIT_S.get(n, 120.0)
                        old = measure_page(browser, daemon.url, n, wait, False)
                        _say(f"dashboard before batching: {old}")
                finally:
                    daemon.stop()
                rows.extend(_rows(n, daemon.start_s, new, old))
                shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _rows(n: int, start_s: float, new: dict, old: dict | None) -> list[dict]:
    load = f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    size = f"{n:,} runs x {STEPS} steps"

    def ms(d: dict | None, key: str, wait: float) -> Any:
        if d is None:
            return "not measured"
        v = d.get(key)
        return f"> {wait:g} s (not drawn)" if v is None else v / 1000

    wait_old = BASELINE_WAIT_S.get(n, 120.0)

    def cmp(key: str) -> str:
        if old is None:
            return f"{size}; {load}"
        o, v = old.get(key), new.get(key)
        if o is None:
            return f"before: not done in {wait_old:g} s; {size}; {load}"
        ratio = f" ({o / v:.0f}x)" if v else ""
        return f"before: {o / 1000:.2f} s{ratio}; {size}; {load}"

    rows = [
        {"bench": "manyruns", "metric": f"daemon start, {n:,} runs", "value": start_s,
         "unit": "s", "target": "", "compare": f"{size}; {load}"},
        {"bench": "manyruns", "metric": f"run list shown, {n:,} runs", "value": ms(new, "listed_ms", WAIT_S),
         "unit": "s", "target": "", "compare": cmp("listed_ms")},
        {"bench": "manyruns", "metric": f"charts drawn, {n:,} runs ({new['overlaid']} overlaid)",
         "value": ms(new, "drawn_ms", WAIT_S), "unit": "s", "target": "< 3 s",
         "compare": cmp("drawn_ms")},
        {"bench": "manyruns", "metric": f"HTTP requests until drawn, {n:,} runs", "value": new["requests"],
         "unit": "", "target": "< 50",
         "compare": f"before: {old['requests']} (until drawn or given up)" if old else size},
        {"bench": "manyruns", "metric": f"HTTP requests 3 s later, {n:,} runs", "value": new["requests_later"],
         "unit": "", "target": "", "compare": f"before: {old['requests_later']}" if old else size},
        {"bench": "manyruns", "metric": f"sidebar rows in the DOM, {n:,} runs", "value": new["dom_rows"],
         "unit": "", "target": "",
         "compare": f"before: {old['dom_rows'] if old['dom_rows'] is not None else 'not read (still loading)'}"
         if old else size},
    ]  # fmt: skip
    if "all_ms" in new:
        rows.append(
            {"bench": "manyruns", "metric": f"'all' clicked: {n:,} runs drawn", "value": new["all_ms"] / 1000,
             "unit": "s", "target": "", "compare": f"{new['all_requests']} requests; {size}"}
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['metric']:<52} {row['value']!s:>12} {row['unit']:<3} {row['compare']}")
