"""The dashboard where it can go wrong: degenerate ranges, selection changes, slow or failing
answers, compaction and unknown values, in a real browser (Debian chromium via Playwright)
against a real server.

Pure modules are run in a Web Worker with a deadline (`probe`), so a function that never returns
fails the test instead of freezing the page. Slow answers are made by `GATE`: the page's fetch
reads the server's answer when asked (the server's state at that moment) and hands it over only
when the test releases it.
"""

from __future__ import annotations

import math

import pytest

from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

T0 = 1_700_000_000.0
FLAT = 10240.0
FLAT_UP = math.nextafter(FLAT, math.inf)  # the next float: a flat line with float noise
LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]

# a module worker that calls one export of one dashboard module and posts the result
PROBE_JS = """
self.onmessage = async (ev) => {
  const { module, fn, args } = ev.data;
  try {
    const m = await import(`./${module}`);
    self.postMessage({ ok: true, value: m[fn](...args) });
  } catch (err) {
    self.postMessage({ ok: false, error: String(err) });
  }
};
"""

PROBE_CALL = """async ([module, fn, args, ms]) => {
  const w = new Worker('/__probe.js', { type: 'module' });
  const got = await Promise.race([
    new Promise((res) => {
      w.onmessage = (e) => res(e.data);
      w.onerror = (e) => res({ ok: false, error: `worker: ${e.message}` });
      w.postMessage({ module, fn, args });
    }),
    new Promise((res) => setTimeout(() => res({ ok: false, error: 'timeout' }), ms)),
  ]);
  w.terminate();
  return got;
}"""

# Installed before the page's own scripts: URLs matching window.__gate.match (a regex source)
# are answered with what the server said when asked, but only once the test calls release();
# window.__gate.fail = n answers the next n matching requests with HTTP 500 (and with
# window.__gate.hold = false the others go through at once).
GATE = """
(() => {
  const real = window.fetch.bind(window);
  const gate = { match: null, hold: true, held: [], fail: 0, failed: [], asked: [] };
  gate.release = () => { const h = gate.held; gate.held = []; h.forEach((r) => r()); return h.length; };
  window.__gate = gate;
  window.fetch = async (url, opts) => {
    const u = String(url);
    if (!gate.match || !new RegExp(gate.match).test(u)) return real(url, opts);
    gate.asked.push(u);
    if (gate.fail > 0) {
      gate.fail -= 1;
      gate.failed.push(u);
      return new Response('{"error": "test"}', { status: 500 });
    }
    const res = await real(url, opts);
    if (!gate.hold) return res;
    const body = await res.text();
    await new Promise((r) => gate.held.push(r));
    return new Response(body, { status: res.status, headers: { 'content-type': 'application/json' } });
  };
})();
"""


def write_root(root) -> dict[str, RunDir]:
    flat = RunDir(root, "flat", max_steps=100, start=False)
    flat.append("start", t=T0)
    for s in range(1, 41):
        flat.metrics(s, t=T0 + s, loss=FLAT if s % 2 else FLAT_UP)
    calm = RunDir(root, "calm", max_steps=100, start=False)
    calm.append("start", t=T0)
    for s in range(1, 11):
        calm.metrics(s, t=T0 + s, loss=2.0 - s / 10)
    grower = RunDir(root, "grower", max_steps=100)
    for s in range(1, 21):
        grower.metrics(s, loss=1.0 + 1.0 / s)
    adapters = RunDir(root, "adapters", max_steps=100)
    for s in range(1, 41):
        adapters.metrics(s, loss=2.0 - s / 40)
        if s % 10 == 0:
            adapters.lora(s, lora_norms(s))
    return {r.id: r for r in (flat, calm, grower, adapters)}


def lora_norms(step: int) -> dict[str, dict[str, float]]:
    return {n: {"A": 1.0 + step / 100, "B": step / 1000, "update": step / 1e4} for n in LAYERS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs of the module's server, to append to (each test appends to its own run)."""
    root = tmp_path_factory.mktemp("runs")
    return root, write_root(root)


@pytest.fixture(scope="module")
def server(runs):
    with LiveServer(runs[0], gpu="fake") as srv:
        yield srv


class GatedPage(Page):
    """A dashboard page with the fetch gate installed before its scripts run."""

    def __init__(self, browser, server, match: str | None = None, fail: int = 0) -> None:
        self.ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        self.ctx.add_init_script(GATE)
        setup = (
            f"window.__gate.match = {match!r}; window.__gate.fail = {fail};"
            f" window.__gate.hold = {'false' if fail else 'true'};"
            if match
            else ""
        )
        if setup:
            self.ctx.add_init_script(setup)
        self.ctx.route(
            "**/__probe.js",
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=PROBE_JS),
        )
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(server.url + "/")
        self.wait("s => s.conn === 'live' && s.runs.length > 0")

    def probe(self, module: str, fn: str, *args, ms: int = 3000):
        """`module.fn(*args)` in a worker; {"ok": False, "error": "timeout"} if it hangs."""
        return self.page.evaluate(PROBE_CALL, [module, fn, list(args), ms])

    def xs(self, run: str, series: str = "loss"):
        return self.page.evaluate("([r, s]) => window.__mudpuppy.xs(r, s)", [run, series])


@pytest.fixture
def dash(browser, server):
    p = GatedPage(browser, server)
    p.wait("s => s.pending === 0 && s.charts.loss.lines > 0")
    yield p
    p.close()


def test_ticks_end_for_ranges_below_the_float_spacing(dash):
    ulp_t = math.nextafter(T0, math.inf) - T0
    cases = [
        ("niceTicks", FLAT, FLAT_UP, 4),  # a flat y range with float noise
        ("niceTicks", T0, T0 + 2 * ulp_t, 6),  # a zoom into a few ulps of a unix time
        ("timeTicks", T0, T0 + 5e-7, 6),  # the same through the time axis
        ("logTicks", math.log10(FLAT), math.nextafter(math.log10(FLAT), math.inf), 4),
    ]
    for fn, lo, hi, count in cases:
        got = dash.probe("axis.js", fn, lo, hi, count)
        assert got["ok"], (fn, lo, hi, got)
        assert 1 <= len(got["value"]) <= 2, (fn, got)
        assert all(lo <= v <= hi for v in got["value"]), (fn, got)
    # ordinary ranges are unchanged
    assert dash.probe("axis.js", "niceTicks", 0, 10, 5)["value"] == [0, 2, 4, 6, 8, 10]
    assert dash.probe("axis.js", "niceTicks", -3, 7, 4)["value"] == [-2, 0, 2, 4, 6]
    assert dash.probe("axis.js", "logTicks", -1, 3, 4)["value"] == [-1, 0, 1, 2, 3]
    assert dash.probe("axis.js", "timeTicks", 0, 3600, 6)["value"] == [
        0,
        600,
        1200,
        1800,
        2400,
        3000,
        3600,
    ]


def test_a_flat_line_with_float_noise_gets_a_padded_range(dash):
    dash.page.fill("#run-filter", "^flat$")
    # a draw that never ends would freeze the page: the wait then times out
    dash.wait("s => s.overlaid.length === 1 && s.charts.loss.lines === 1", timeout=8000)
    s = dash.stats()["charts"]["loss"]
    pad = FLAT_UP * 0.1  # flat: 10 % of the value either side
    assert s["ymin"] == pytest.approx(FLAT - pad, abs=1e-9)
    assert s["ymax"] == pytest.approx(FLAT_UP + pad, abs=1e-9)
    assert dash.errors == []


def test_a_run_checked_again_is_fetched_with_what_was_written_while_it_was_off(dash, runs):
    dash.page.click('#run-list li[data-id="calm"] .name')  # the focused run stays subscribed
    dash.wait("s => s.focused === 'calm' && s.held.includes('grower') && s.pending === 0")
    assert dash.xs("grower") == list(range(1, 21))
    dash.page.uncheck('#run-list li[data-id="grower"] input')
    dash.wait("s => !s.overlaid.includes('grower')")
    assert "grower" not in dash.stats()["held"]  # no stream for it: nothing stale is kept
    run = runs[1]["grower"]
    for s in range(21, 26):
        run.metrics(s, loss=1.0 + 1.0 / s)
    dash.page.wait_for_function(
        "() => window.__mudpuppy.app.store.summaries.get('grower')?.step === 25"
    )
    dash.page.check('#run-list li[data-id="grower"] input')
    dash.page.wait_for_function(
        "() => (window.__mudpuppy.xs('grower', 'loss') || []).length === 25", timeout=5000
    )
    assert dash.xs("grower") == list(range(1, 26))
    dash.wait("s => s.charts.loss.series.some(x => x.key === 'grower\\u0000loss' && x.last === 25)")


def test_a_load_in_flight_across_a_restart_is_asked_again(browser, tmp_path):
    run = RunDir(tmp_path, "survivor", max_steps=100)
    for s in range(1, 21):
        run.metrics(s, loss=1.0 + 1.0 / s)
    with LiveServer(tmp_path) as server:
        dash = GatedPage(browser, server)
        dash.wait("s => s.pending === 0 && s.loads === 1")
        assert dash.xs("survivor") == list(range(1, 21))
        # a reload asked before the outage and answered late: it holds the 20 points of then
        dash.page.evaluate("window.__gate.match = 'api/series$'")
        dash.page.evaluate("() => { window.__mudpuppy.app.store.load('survivor', 'step'); }")
        dash.page.wait_for_function("() => window.__gate.held.length === 1")
        server.stop()
        dash.wait("s => s.conn === 'reconnecting' || s.conn === 'disconnected'")
        for s in range(21, 26):  # written while the daemon is down
            run.metrics(s, loss=1.0 + 1.0 / s)
        server.start()
        dash.wait("s => s.conn === 'live' && s.snapshots === 2", timeout=20_000)
        # the snapshot's reload is a new request (the gate reads the server's answer then)
        dash.page.wait_for_function("() => window.__gate.asked.length >= 2", timeout=5000)
        dash.page.evaluate("window.__gate.match = null; window.__gate.release()")
        # a request still being read when the gate opened is held after it: release each poll
        dash.page.wait_for_function(
            "() => window.__gate.release() + window.__mudpuppy.stats().pending === 0"
        )
        dash.page.wait_for_function(
            "() => window.__mudpuppy.xs('survivor', 'loss').length === 25", timeout=5000
        )
        assert dash.xs("survivor") == list(range(1, 26))
        assert dash.errors == []
        dash.close()


def test_compaction_keeps_every_lone_non_finite_value_and_the_spikes(dash):
    got = dash.page.evaluate(
        """async () => {
          const m = await import('/series.js');
          const special = {1001: NaN, 2002: NaN, 3000: NaN, 3002: 99, 4003: -Infinity,
                           5000: NaN, 5001: NaN, 5002: NaN, 5003: NaN, 6001: -5};
          const b = new m.SeriesBuf();
          for (let i = 0; i <= m.MAX_POINTS; i++) b.push(i, i in special ? special[i] : 1 + (i % 3) / 10);
          const bad = [];
          let hi = -Infinity, lo = Infinity, hiX = null, loX = null;
          for (let i = 0; i < b.n; i++) {
            const v = b.y[i];
            if (!Number.isFinite(v)) bad.push([b.x[i], String(v)]);
            else {
              if (v > hi) { hi = v; hiX = b.x[i]; }
              if (v < lo) { lo = v; loX = b.x[i]; }
            }
          }
          let sorted = true;
          for (let i = 1; i < b.n; i++) if (!(b.x[i] > b.x[i - 1])) sorted = false;
          return {n: b.n, version: b.version, bad, hi, hiX, lo, loX, sorted};
        }"""
    )
    assert got["version"] == 1  # compacted once
    # the older 125,000 points are 31,250 groups of 4: 2 kept of an ordinary group, 3 of the
    # five groups with a non-finite value; the newer 125,001 points are untouched
    assert got["n"] == 31_250 * 2 + 5 + 125_001
    assert got["bad"] == [
        [1001, "NaN"],
        [2002, "NaN"],
        [3000, "NaN"],
        [4003, "-Infinity"],
        [5000, "NaN"],  # an all-NaN group keeps 3 of its 4
        [5001, "NaN"],
        [5002, "NaN"],
    ]
    assert (got["hi"], got["hiX"]) == (99, 3002)  # the spike beside a NaN
    assert (got["lo"], got["loX"]) == (-5, 6001)
    assert got["sorted"]


def test_a_lora_column_streamed_while_the_matrix_is_fetched_is_kept(browser, server, runs):
    dash = GatedPage(browser, server, match="api/runs/adapters/lora")
    try:
        # the run may have had the focus since the load (the newest running run): start over
        dash.page.click('#run-list li[data-id="calm"] .name')
        dash.wait("s => s.focused === 'calm'")
        dash.page.evaluate("window.__gate.release()")
        dash.page.click('#run-list li[data-id="adapters"] .name')
        dash.page.wait_for_function("() => window.__gate.held.length === 1")  # 4 columns, held
        dash.page.evaluate(
            """() => {
              const sock = window.__mudpuppy.app.socket;
              const handle = sock.onMessage;
              window.__loraSeen = [];
              sock.onMessage = (m) => {
                if (m.type === 'lora') window.__loraSeen.push(m.step);
                handle(m);
              };
            }"""
        )
        runs[1]["adapters"].lora(50, lora_norms(50))  # streamed while the answer is on its way
        dash.page.wait_for_function("() => window.__loraSeen.includes(50)")
        dash.page.evaluate("window.__gate.release()")
        dash.wait("s => s.lora.run === 'adapters' && s.lora.fetches >= 1 && s.lora.steps > 0")
        lora = dash.stats()["lora"]
        assert (lora["layers"], lora["steps"]) == (2, 5)
        steps = dash.page.evaluate("window.__mudpuppy.app.lora.m.steps")
        assert steps == [10, 20, 30, 40, 50]
        assert dash.errors == []
    finally:
        dash.close()


def test_a_failed_first_load_is_retried(browser, server):
    # the first request holds every overlaid run: they fail together and are retried together
    dash = GatedPage(browser, server, match="api/series$", fail=1)
    try:
        dash.page.wait_for_function("() => window.__gate.failed.length === 1")
        dash.page.wait_for_function(
            "() => (window.__mudpuppy.xs('calm', 'loss') || []).length === 10", timeout=5000
        )
        assert dash.xs("calm") == list(range(1, 11))
        assert dash.page.evaluate("window.__gate.asked.length") == 2  # one retry
        dash.wait("s => s.charts.loss.series.some(x => x.key === 'calm\\u0000loss')")
        assert dash.errors == []
    finally:
        dash.close()


def test_vram_gauge_shows_unknown_when_the_used_memory_is_unknown(dash):
    got = dash.page.evaluate(
        """async () => {
          const g = await import('/gpupanel.js');
          const dev = (used, total) => ({index: 7, name: 'x', util_pct: 50, mem_used_bytes: used,
            mem_total_bytes: total, temperature_c: null, power_w: null, power_limit_w: null});
          const mem = (d) => g.gaugeReadings(d).find((r) => r.key === 'mem');
          const panel = window.__mudpuppy.app.gpu;
          panel.addSample({devices: [dev(null, 80 * 2 ** 30)]});
          panel.addSample({devices: [dev(40 * 2 ** 30, 80 * 2 ** 30)]});
          return {
            unknown: mem(dev(null, 80 * 2 ** 30)), half: mem(dev(40 * 2 ** 30, 80 * 2 ** 30)),
            noTotal: mem(dev(2 ** 30, null)), zeroUsed: mem(dev(0, 80 * 2 ** 30)),
            history: panel.history.get('7').mem,
          };
        }"""
    )
    assert got["unknown"] == {"key": "mem", "frac": None, "text": "\u2014", "sub": "?/80.0 GiB"}
    assert got["half"] == {"key": "mem", "frac": 0.5, "text": "50%", "sub": "40.0/80.0 GiB"}
    assert got["noTotal"] == {"key": "mem", "frac": None, "text": "\u2014", "sub": ""}
    assert (got["zeroUsed"]["frac"], got["zeroUsed"]["text"]) == (0, "0%")
    assert got["history"] == [None, 50]  # the unknown sample is a gap, not 0 %


def test_summaries_are_decoded_by_one_function_that_leaves_names_alone(dash):
    got = dash.page.evaluate(
        """async () => {
          const a = await import('/api.js');
          const s = a.decodeSummary({id: 'constructor', name: 'toString', host: '__proto__',
            loss: 'NaN', best_loss: 'Infinity', eval_loss: '-Infinity', grad_norm: null, step: 3});
          return {
            s: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? String(v) : v])),
            num: ['constructor', 'hasOwnProperty', 'NaN', null].map((v) => String(a.num(v))),
            col: Array.from(a.column(['toString', null, 'Infinity', 2])).map(String),
            exports: Object.keys(a).sort(),
          };
        }"""
    )
    assert got["s"] == {
        "id": "constructor",
        "name": "toString",
        "host": "__proto__",
        "loss": "NaN",
        "best_loss": "Infinity",
        "eval_loss": "-Infinity",
        "grad_norm": None,
        "step": "3",
    }
    assert got["num"] == ["constructor", "hasOwnProperty", "NaN", "null"]
    assert got["col"] == ["NaN", "NaN", "Infinity", "2"]
    assert "fetchRuns" not in got["exports"]  # unused: the run list comes with the snapshot


def test_streamed_points_without_a_known_time_stay_off_the_time_axis(dash):
    dash.page.select_option("#x-mode", "wall")
    dash.wait("s => s.opts.xMode === 'wall' && s.pending === 0 && s.held.includes('calm')")
    dash.page.wait_for_function("() => (window.__mudpuppy.xs('calm', 'loss') || []).length === 10")
    assert dash.xs("calm") == [T0 + s for s in range(1, 11)]
    got = dash.page.evaluate(
        """([t0]) => {
          const app = window.__mudpuppy.app;
          const gen = app.store.data.get('calm').generation;
          // unknown times as the server writes them: null, or the string "NaN" (older daemons)
          app.onMessage({type: 'points', run: 'calm', generation: gen, series: {loss:
            {i0: 10, step: [11, 12, 13], t: [null, 'NaN', t0 + 13], y: [1.1, 1.2, 1.3]}}});
          const b = app.store.buf('calm', 'loss');
          return {next: b.next, dropped: app.store.dropped, xs: window.__mudpuppy.xs('calm', 'loss')};
        }""",
        [T0],
    )
    assert got["xs"] == [T0 + s for s in range(1, 11)] + [T0 + 13]
    assert got["next"] == 13 and got["dropped"] == 0


def test_points_of_one_series_redraw_only_the_chart_that_shows_it(dash):
    dash.wait("s => s.held.includes('calm') && s.pending === 0")
    dash.page.wait_for_timeout(300)  # let the first frames settle
    got = dash.page.evaluate(
        """async () => {
          const app = window.__mudpuppy.app;
          const draws = () => Object.fromEntries(
            Object.entries(app.stats().charts).map(([id, c]) => [id, c.draws]));
          const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
          const before = draws();
          const gen = app.store.data.get('calm').generation;
          const n = app.store.buf('calm', 'loss').next;
          app.onMessage({type: 'points', run: 'calm', generation: gen,
                         series: {loss: {i0: n, step: [n + 1], t: [1], y: [0.5]}}});
          await frame();
          await frame();
          const after = draws();
          await frame();
          return {before, after, again: draws()};
        }"""
    )
    before, after = got["before"], got["after"]
    assert after["loss"] == before["loss"] + 1
    for chart in ("lr", "grad", "thru", "mem"):
        assert after[chart] == before[chart], chart
    assert got["again"] == after  # nothing changed since: no draw at all


def test_a_zoom_below_the_float_resolution_is_refused(dash):
    got = dash.page.evaluate(
        """([t0]) => {
          const app = window.__mudpuppy.app;
          app.zoom(t0, t0 + 5e-7);  // a few ulps of a unix time
          const refused = app.stats().view;
          app.zoom(t0, t0 + 0.01);
          const taken = app.stats().view;
          app.resetZoom();
          return {refused, taken};
        }""",
        [T0],
    )
    assert got["refused"] is None
    assert got["taken"] == {"x0": T0, "x1": T0 + 0.01}
