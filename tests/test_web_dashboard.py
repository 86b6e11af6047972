"""The dashboard in a real browser (Debian chromium driven by Playwright) against a real server.

The runs root holds the three kinds of sources (native runs written line by line, an HF
`trainer_state.json` and a LLaMA-Factory `trainer_log.jsonl` from tests/fixtures). Assertions read
the chart state the page exposes (`window.__mudpuppy.stats()`) and the canvas pixels.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import needs_chromium
from tests.conftest import FIXTURES
from tests.serverutil import REPO, LiveServer, RunDir

pytestmark = needs_chromium

T0 = 1_700_000_000.0
NAN_STEP = 120
SPIKE_STEP = 1500
RESTART_STEP = 2000
LAYERS = [f"model.layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "v_proj")]
DEAD_LAYER = "model.layers.2.self_attn.v_proj"  # its B (and so its update) stays at zero


def loss_at(step: int, k: int) -> float:
    return 2.5 * math.exp(-step / (60 + 30 * k)) + 0.3 + 0.05 * math.sin(step)


def write_sweep(root: Path, k: int, steps: int = 200) -> RunDir:
    run = RunDir(root, f"sweep/lr-{k}", max_steps=400, start=False)
    run.append("start", t=T0)
    for s in range(1, steps + 1):
        loss = math.nan if (k == 1 and s == NAN_STEP) else loss_at(s, k)
        run.metrics(
            s, t=T0 + 2 * s, loss=loss, learning_rate=1e-4 * (k + 1), grad_norm=1.0 + s / 100
        )
        if s % 50 == 0:
            run.append("eval", t=T0 + 2 * s, step=s, values={"eval_loss": loss_at(s, k) + 0.1})
            run.append("checkpoint", t=T0 + 2 * s, step=s, path=f"checkpoint-{s}")
        if s % 40 == 0:
            layers = {
                name: {
                    "A": 1.0 + s / 100,
                    "B": 0.0 if name == DEAD_LAYER else s / 1000,
                    "update": 0.0 if name == DEAD_LAYER else s / 10000,
                }
                for name in LAYERS
            }
            run.append("lora", t=T0 + 2 * s, step=s, layers=layers)
    return run


def make_root(root: Path) -> Path:
    (root / "hf-full-ft").mkdir()
    shutil.copy(
        FIXTURES / "trainer_state" / "causal_lm_full_ft_with_eval_loss.json",
        root / "hf-full-ft" / "trainer_state.json",
    )
    (root / "llf-qwen").mkdir()
    shutil.copy(
        FIXTURES / "llamafactory" / "qwen_medical_lr_with_eval.jsonl",
        root / "llf-qwen" / "trainer_log.jsonl",
    )
    write_sweep(root, 0)
    write_sweep(root, 1)
    live = RunDir(root, "live", max_steps=500)
    for s in range(1, 11):
        live.metrics(s, t=T0 + s, loss=1.0 / s)
    long = RunDir(root, "long", max_steps=3000)
    for s in range(1, 3001):
        long.metrics(s, t=T0 + s, loss=50.0 if s == SPIKE_STEP else 1.0 + (s % 7) / 100)
        if s == RESTART_STEP:  # resumed from a checkpoint: a second start event
            long.append("start", t=T0 + s, resumed_from=f"checkpoint-{s}")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("runs"))
    with LiveServer(root, gpu="fake") as srv:
        yield srv


class Page:
    """A loaded dashboard page with its console errors and every URL it asked for."""

    def __init__(
        self,
        browser,
        server,
        width: int = 1440,
        height: int = 900,
        *,
        path: str = "/",
        permissions: tuple[str, ...] = (),
        init_script: str | None = None,
        real_focus: bool = False,
    ) -> None:
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        if permissions:
            self.ctx.grant_permissions(list(permissions), origin=server.url)
        if init_script:
            self.ctx.add_init_script(init_script)
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.on("websocket", lambda ws: self.urls.append(ws.url))
        self.page.goto(server.url + path)
        if real_focus:
            # headless pages all believe they have the focus; this one follows the real focus
            # (bring_to_front), so that blur and focus happen as on a desktop (set after the
            # navigation, which turns the emulation back on)
            self.ctx.new_cdp_session(self.page).send(
                "Emulation.setFocusEmulationEnabled", {"enabled": False}
            )
        self.wait("s => s.conn === 'live' && s.runs.length > 0")
        self.wait("s => s.pending === 0 && s.loads >= s.overlaid.length && s.charts.loss.lines > 0")

    def stats(self) -> dict:
        return self.page.evaluate("window.__mudpuppy.stats()")

    def wait(self, predicate: str, timeout: float = 10_000) -> None:
        self.page.wait_for_function(
            f"() => window.__mudpuppy && ({predicate})(window.__mudpuppy.stats())", timeout=timeout
        )

    def wait_text(self, selector: str, text: str) -> None:
        """Until the element shows exactly `text` (the DOM is updated on the next frame)."""
        self.page.wait_for_function(
            "([sel, text]) => document.querySelector(sel)?.textContent === text",
            arg=[selector, text],
        )

    def pixels(self, chart: str) -> dict:
        """Bright pixels inside the plot area, red ones along its top edge, and a hash of all."""
        return self.page.evaluate(
            """(id) => {
              const c = document.querySelector(`[data-chart="${id}"] canvas`);
              const g = window.__mudpuppy.stats().charts[id];
              const dpr = c.width / c.getBoundingClientRect().width;
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const x0 = Math.ceil((g.left + 2) * dpr), x1 = Math.floor((g.left + g.width - 2) * dpr);
              const y0 = Math.ceil((g.top + 2) * dpr), y1 = Math.floor((g.top + g.height - 2) * dpr);
              let bright = 0, red = 0, hash = 0;
              for (let i = 0; i < d.length; i += 4) hash = (Math.imul(hash, 31) + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
              for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
                const o = (y * c.width + x) * 4;
                if (Math.max(d[o], d[o + 1], d[o + 2]) > 150) bright++;
                if (y < y0 + 10 * dpr && d[o] > 200 && d[o + 1] < 90 && d[o + 2] < 90) red++;
              }
              return {bright, red, hash};
            }""",
            chart,
        )

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def dash(browser, server):
    p = Page(browser, server)
    yield p
    p.close()


def test_page_loads_without_console_errors_or_outside_requests(dash, server):
    dash.page.wait_for_timeout(500)
    assert dash.errors == []
    hosts = {urlsplit(u).hostname for u in dash.urls if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, dash.urls
    # the tab icon is inline: a request the browser makes on its own time could fail mid-restart
    assert not any("favicon" in u for u in dash.urls), dash.urls
    assert any(u.endswith("/app.js") for u in dash.urls)
    assert any(u.startswith(f"ws://127.0.0.1:{server.port}/ws") for u in dash.urls)


def test_sidebar_lists_native_trainer_state_and_llamafactory_runs(dash):
    rows = dash.page.eval_on_selector_all(
        "#run-list li", "els => els.map(e => [e.dataset.id, e.querySelector('.badge').textContent])"
    )
    assert sorted(rows) == [
        ["hf-full-ft", "HF"],
        ["live", "NAT"],
        ["llf-qwen", "LLF"],
        ["long", "NAT"],
        ["sweep/lr-0", "NAT"],
        ["sweep/lr-1", "NAT"],
    ]
    dash.wait_text("#run-count", "6/6")


def test_loss_chart_is_drawn_and_follows_a_line_appended_by_another_process(dash, server):
    before = dash.pixels("loss")
    assert before["bright"] > 500
    dash.page.click('#run-list li[data-id="live"] .name')
    dash.wait("s => s.focused === 'live'")
    dash.wait_text('[data-stat="step"]', "10 / 500")
    n0 = next(
        s["n"] for s in dash.stats()["charts"]["loss"]["series"] if s["key"] == "live\x00loss"
    )
    code = (
        "import sys, time, mudpuppy_callback as f\n"
        "line = f.encode_line({'v': 1, 'seq': 11, 't': time.time(), 'kind': 'metrics', 'step': 260,"
        " 'epoch': 1.0, 'values': {'loss': 9.5}})\n"
        "open(sys.argv[1], 'ab').write(line)\n"
    )
    events = server.root / "live" / "events.jsonl"
    subprocess.run([sys.executable, "-c", code, str(events)], check=True, cwd=REPO, timeout=30)
    dash.wait("s => s.charts.loss.series.some(x => x.key === 'live\\u0000loss' && x.last === 260)")
    series = {s["key"]: s for s in dash.stats()["charts"]["loss"]["series"]}
    assert series["live\x00loss"]["n"] == n0 + 1
    dash.page.wait_for_function(
        "() => document.querySelector('[data-stat=\"step\"]').textContent === '260 / 500'"
    )
    assert dash.stats()["charts"]["loss"]["ymax"] > 9.5  # the new point is in the picture
    assert dash.pixels("loss")["hash"] != before["hash"]


def test_filter_selection_and_focus_change_the_chart(dash):
    # hf and llf: loss + eval loss; live, long: loss; sweeps: loss + eval loss
    dash.wait("s => s.charts.loss.lines === 10")
    h0 = dash.pixels("loss")["hash"]
    dash.page.fill("#run-filter", "^sweep/")
    dash.wait("s => s.shown.length === 2 && s.charts.loss.lines === 4")
    s = dash.stats()
    assert s["overlaid"] == ["sweep/lr-0", "sweep/lr-1"]
    keys = {x["key"].split("\x00")[0] for x in s["charts"]["loss"]["series"]}
    assert keys == {"sweep/lr-0", "sweep/lr-1"}
    assert s["charts"]["loss"]["lines"] == 4  # loss + eval loss of each
    h1 = dash.pixels("loss")["hash"]
    assert h1 != h0

    dash.page.fill("#run-filter", "lr-(")  # not a regex: plain substring, flagged
    dash.wait("s => s.shown.length === 0")
    assert "bad" in dash.page.get_attribute("#run-filter", "class")

    dash.page.fill("#run-filter", "sweep")
    dash.page.uncheck('#run-list li[data-id="sweep/lr-1"] input')
    dash.wait("s => s.overlaid.length === 1 && s.charts.loss.lines === 2")
    assert dash.pixels("loss")["hash"] != h1

    dash.page.click('#run-list li[data-id="sweep/lr-1"] .name')
    dash.wait("s => s.focused === 'sweep/lr-1'")
    dash.wait_text("#focus-name", "lr-1")
    assert "focused" in dash.page.get_attribute('#run-list li[data-id="sweep/lr-1"]', "class")


def test_drag_zooms_with_a_finer_fetch_and_double_click_resets(dash):
    dash.page.fill("#run-filter", "^long$")
    dash.wait("s => s.charts.loss.lines === 1")
    s = dash.stats()["charts"]["loss"]
    [base] = s["series"]
    assert base["n"] < 3000  # decimated by the server
    assert s["markers"] == {"nonfinite": 0, "spike": 1, "checkpoint": 0, "restart": 1}
    assert s["ymax"] > 50  # the one-point spike survives both decimations
    assert (s["x0"], s["x1"]) == (base["first"], base["last"]) and s["x1"] == 3000
    box = dash.page.locator('[data-chart="loss"] .plot').bounding_box()
    y = box["y"] + s["top"] + s["height"] / 2
    dash.page.mouse.move(box["x"] + s["left"] + 0.4 * s["width"], y)
    dash.page.mouse.down()
    dash.page.mouse.move(box["x"] + s["left"] + 0.45 * s["width"], y, steps=4)
    dash.page.mouse.up()
    dash.wait("s => s.view !== null && s.zoomFetches >= 1")
    dash.wait("s => s.charts.loss.series.some(x => x.key === 'long\\u0000loss' && x.n < 400)")
    s = dash.stats()["charts"]["loss"]
    assert 1150 < s["x0"] < 1250 and 1300 < s["x1"] < 1400
    zoomed = next(x for x in s["series"] if x["key"] == "long\x00loss")
    # raw points: one per step across the range
    assert zoomed["n"] == zoomed["last"] - zoomed["first"] + 1
    assert zoomed["first"] <= s["x0"] + 1 and zoomed["last"] >= s["x1"] - 1

    dash.page.dblclick('[data-chart="loss"] .plot')
    # the view resets at once; the chart shows it at its next frame
    dash.wait(
        f"s => s.view === null && s.charts.loss.x0 === {base['first']} && s.charts.loss.x1 === 3000"
    )
    s = dash.stats()["charts"]["loss"]
    assert (s["x0"], s["x1"]) == (base["first"], 3000)
    assert s["series"][0]["n"] == base["n"]


def test_smoothing_log_scale_and_x_axis_change_the_drawing(dash):
    dash.page.fill("#run-filter", "^sweep/")
    dash.wait("s => s.overlaid.length === 2 && s.charts.loss.lines === 4")
    h = dash.pixels("loss")["hash"]
    dash.page.fill("#smoothing", "0.9")
    dash.wait("s => s.charts.loss.smoothing === 0.9")
    assert dash.page.text_content("#smoothing-value") == "0.90"
    h_smooth = dash.pixels("loss")["hash"]
    assert h_smooth != h

    linear = dash.stats()["charts"]["loss"]
    assert linear["ymax"] > 2.5
    dash.page.check("#log-y")
    dash.wait("s => s.charts.loss.logY")
    log = dash.stats()["charts"]["loss"]
    # log10 units: the data spans 0.3 .. 2.8
    assert -0.7 < log["ymin"] < -0.5 and 0.4 < log["ymax"] < 0.6
    assert dash.pixels("loss")["hash"] != h_smooth

    dash.page.select_option("#x-mode", "rel")
    dash.wait("s => s.charts.loss.xMode === 'rel' && s.pending === 0 && s.charts.loss.lines === 4")
    rel = dash.stats()["charts"]["loss"]
    assert (rel["x0"], rel["x1"]) == (2, 400)  # seconds since the start event (2 s per step)
    dash.page.select_option("#x-mode", "wall")
    dash.wait("s => s.charts.loss.xMode === 'wall' && s.pending === 0 && s.charts.loss.lines === 4")
    wall = dash.stats()["charts"]["loss"]
    assert (wall["x0"], wall["x1"]) == (T0 + 2, T0 + 400)


def test_debiased_ema_matches_tensorboard(dash):
    got = dash.page.evaluate(
        "async () => { const m = await import('/series.js');"
        " return Array.from(m.ema(new Float64Array([1, 2, NaN, 3]), 0.5)); }"
    )
    assert got[0] == 1.0
    assert got[1] == pytest.approx(1.25 / 0.75)
    assert math.isnan(got[2])  # a NaN passes through, the state is untouched
    assert got[3] == pytest.approx((0.625 + 1.5) / 0.875)


def test_backoff_and_formatting_helpers(dash):
    got = dash.page.evaluate(
        """async () => {
          const s = await import('/socket.js');
          const f = await import('/format.js');
          const a = await import('/api.js');
          const mid = () => 0.5;
          return {
            backoff: [0, 1, 2, 5, 6, 20].map((n) => s.backoffDelay(n, mid)),
            jitter: [s.backoffDelay(3, () => 0), s.backoffDelay(3, () => 1), s.backoffDelay(9, () => 1)],
            dur: [45, 192, 3725, 856000].map(f.fmtDuration),
            num: [0.123456, 1234.5, 2e-5, NaN, Infinity, null].map((v) => f.fmtNum(v)),
            bytes: f.fmtBytes(1.5 * 2 ** 30), lr: f.fmtLr(0.0002),
            col: Array.from(a.column([1, "NaN", "Infinity", "-Infinity"])).map(String),
            path: a.runPath("sweep/lr 1e-4#a"),
          };
        }"""
    )
    assert got["backoff"] == [500, 1000, 2000, 16000, 30000, 30000]  # doubling, capped at 30 s
    assert got["jitter"] == [3200, 4800, 30000]  # +-20 %, never above the cap
    assert got["dur"] == ["45s", "3m 12s", "1h 02m", "9d 21h"]
    assert got["num"] == ["0.1235", "1235", "2.00e-5", "NaN", "+Inf", "\u2014"]
    assert (got["bytes"], got["lr"]) == ("1.50 GiB", "2.0e-4")
    assert got["col"] == ["1", "NaN", "Infinity", "-Infinity"]
    assert got["path"] == "sweep/lr%201e-4%23a"


def test_series_buffer_is_bounded_and_decimation_keeps_a_lone_spike(dash):
    got = dash.page.evaluate(
        """async () => {
          const m = await import('/series.js');
          const b = new m.SeriesBuf();
          for (let i = 0; i < 300000; i++) b.push(i, i === 1234 ? 99 : 1 + (i % 3) / 10);
          let maxY = -Infinity;
          for (let i = 0; i < b.n; i++) maxY = Math.max(maxY, b.y[i]);
          // 100,000 points, one spike and one NaN, into 500 pixel columns, with the block index
          const x = new Float64Array(100000).map((_, i) => i);
          const y = new Float64Array(100000).map((_, i) => i === 77777 ? 42 : i === 5000 ? NaN : 1);
          const out = {cols: new Float64Array(64)};
          const nf = [];
          const bi = new m.BlockIndex().update(y, y.length);
          const k = m.decimate(x, y, 100000, true, 0, 99999, 500 / 99999, 0, out, false, nf, bi);
          const ys = Array.from(out.cols.subarray(0, 2 * k)).filter((_, i) => i % 2 === 1);
          return {n: b.n, maxY, k, spike: Math.max(...ys.filter(Number.isFinite)), nf,
                  lo: Math.min(...ys.filter(Number.isFinite))};
        }"""
    )
    assert got["n"] <= 250_000 and got["maxY"] == 99  # compacted, the spike kept
    assert got["spike"] == 42 and got["lo"] == 1
    assert got["nf"] == [5000]
    assert got["k"] <= 2 * 502 + 1  # at most 2 points per column, plus the NaN break


def test_nan_loss_shows_a_marker(dash):
    dash.page.fill("#run-filter", "^sweep/lr-1$")
    dash.wait("s => s.overlaid.length === 1 && s.charts.loss.lines === 2")
    s = dash.stats()["charts"]["loss"]
    assert s["markers"]["nonfinite"] == 1
    assert s["markers"]["checkpoint"] == 4
    assert dash.pixels("loss")["red"] > 10
    dash.page.click('#run-list li[data-id="sweep/lr-1"] .name')
    dash.wait_text("#focus-warn", "1 non-finite")
    href = dash.page.get_attribute("#export-csv", "href")
    assert href == "api/runs/sweep/lr-1/export?format=csv"
    dash.page.fill("#run-filter", "^sweep/lr-0$")
    dash.wait(
        "s => s.charts.loss.series.length === 2 && s.charts.loss.series[0].key.startsWith('sweep/lr-0')"
    )
    assert dash.stats()["charts"]["loss"]["markers"]["nonfinite"] == 0
    assert dash.pixels("loss")["red"] == 0


def test_tooltip_lists_every_overlaid_run(dash):
    dash.page.fill("#run-filter", "^sweep/")
    dash.wait("s => s.overlaid.length === 2 && s.charts.loss.lines === 4")
    box = dash.page.locator('[data-chart="loss"] .plot').bounding_box()
    s = dash.stats()["charts"]["loss"]
    dash.page.mouse.move(box["x"] + s["left"] + s["width"] * 0.3, box["y"] + s["top"] + 40)
    dash.page.wait_for_selector('[data-chart="loss"] .tip.on')
    names = dash.page.eval_on_selector_all(
        '[data-chart="loss"] .tip .tipname', "els => els.map(e => e.textContent)"
    )
    assert names == ["lr-0", "lr-0 eval", "lr-1", "lr-1 eval"]
    head = dash.page.text_content('[data-chart="loss"] .tip .tiphead')
    assert head.startswith("step ")
    x = float(head.removeprefix("step ").replace(",", ""))
    assert s["x0"] + 0.25 * (s["x1"] - s["x0"]) < x < s["x0"] + 0.35 * (s["x1"] - s["x0"])


def test_gpu_and_lora_panels(dash):
    # four gauges per device, once the panel has drawn what the stats report
    dash.page.wait_for_function(
        "() => { const n = window.__mudpuppy.stats().gpu.devices;"
        " return n > 0 && document.querySelectorAll('.gauge > canvas:first-child').length === 4 * n; }"
    )
    assert dash.page.text_content("#gpu-badge") == "SIMULATED"
    dash.page.click('#run-list li[data-id="sweep/lr-0"] .name')
    dash.wait(
        "s => s.lora.run === 'sweep/lr-0' && s.lora.layers === 6 && s.lora.nearZero.length > 0"
    )
    lora = dash.stats()["lora"]
    assert lora["steps"] == 5 and lora["nearZero"] == [DEAD_LAYER]
    assert "1 near zero" in dash.page.text_content("#lora-note")
    dash.page.click('[data-lora-mode="A"]')
    dash.wait("s => s.lora.mode === 'A'")
    assert dash.stats()["lora"]["nearZero"] == []


def test_canvas_backing_store_follows_the_device_pixel_ratio(browser, server, dash):
    size = (
        "() => { const c = document.querySelector('[data-chart=\"loss\"] canvas');"
        " return [c.width, c.height, c.getBoundingClientRect().width, c.getBoundingClientRect().height]; }"
    )
    w, h, css_w, css_h = dash.page.evaluate(size)
    assert (w, h) == (css_w, css_h)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=2)
    try:
        page = ctx.new_page()
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => window.__mudpuppy && window.__mudpuppy.stats().charts.loss.lines > 0"
        )
        w2, h2, css_w2, css_h2 = page.evaluate(size)
        assert (w2, h2) == (2 * css_w2, 2 * css_h2)
    finally:
        ctx.close()
    # a ratio change on a loaded page: the next draw re-sizes the backing store
    cdp = dash.ctx.new_cdp_session(dash.page)
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": 900, "deviceScaleFactor": 2, "mobile": False},
    )
    dash.page.check("#log-y")
    dash.page.wait_for_function(
        "() => { const c = document.querySelector('[data-chart=\"loss\"] canvas');"
        " return c.width === 2 * c.getBoundingClientRect().width; }"
    )


def test_canvas_colours_come_from_the_stylesheet(dash):
    got = dash.page.evaluate(
        """async () => {
          const t = await import('/theme.js');
          const g = await import('/gauge.js');
          const css = getComputedStyle(document.documentElement);
          const names = ['bg', 'panel', 'grid', 'green', 'cyan', 'amber', 'magenta', 'red', 'text', 'dim'];
          return {
            colors: t.colors(),
            css: Object.fromEntries(names.map((n) => [n, css.getPropertyValue('--' + n).trim()])),
            once: t.colors() === t.colors(),
            gauge: [0.1, 0.75, 0.95, null].map((f) => g.thresholdColor(f)),
            run: [t.runColor('a'), t.runColor('a'), t.runColor('sweep/lr-1e-4')],
          };
        }"""
    )
    assert got["colors"] == got["css"]
    assert got["colors"]["red"] == "#ff3333" and got["colors"]["panel"] == "#0d1420"
    assert got["once"]  # read once, then shared
    assert got["gauge"] == ["#39ff14", "#ffd700", "#ff3333", "#607080"]
    assert got["run"][0] == got["run"][1] and got["run"][0].startswith("#")
