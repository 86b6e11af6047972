"""Compare and share in a real browser (Debian chromium via Playwright) against a real server:
the runs table with its config diff, grouping, legends, links that restore the view, and the
snapshot file opened from disk. The runs are a sweep written with the real RunWriter:
3 learning rates x 2 seeds (tests/sweep.py)."""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path

import pytest

from mudpuppy_monitor.cli import main
from tests import sweep
from tests.browser import needs_chromium
from tests.serverutil import LiveServer

pytestmark = needs_chromium

IDS = [sweep.run_name(lr, s) for lr in sweep.LRS for s in sweep.SEEDS]
LOADED = (
    "s => s.runs.length > 0 && s.pending === 0 && s.loads >= s.overlaid.length"
    " && s.compare.ready && s.charts.loss.draws > 0"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep.write_sweep(root)
    return root


@pytest.fixture(scope="module")
def server(root):
    with LiveServer(root) as srv:
        yield srv


class Tab:
    """A page in its own browser context, with its console errors and every request it made."""

    def __init__(self, browser, url: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("websocket", lambda ws: self.sockets.append(ws.url))
        self.page.goto(url)
        self.wait(LOADED)
        self.settle()

    def stats(self) -> dict:
        return self.page.evaluate("window.__mudpuppy.stats()")

    def wait(self, predicate: str, timeout: float = 15_000) -> None:
        self.page.wait_for_function(
            f"() => window.__mudpuppy && ({predicate})(window.__mudpuppy.stats())", timeout=timeout
        )

    def settle(self) -> None:
        """Until every fetch is answered and two animation frames have drawn what is dirty."""
        self.wait("s => s.pending === 0 && s.loads >= s.overlaid.length")
        self.page.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )

    def canvases(self) -> dict[str, str]:
        """A hash of every chart's pixels (toDataURL), by chart id."""
        urls = self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(
                 c => [c.dataset.chart, c.querySelector('canvas').toDataURL()]))"""
        )
        return {k: hashlib.sha256(v.encode()).hexdigest() for k, v in urls.items()}

    def table_order(self) -> list[str]:
        """Run ids of the table rows, top to bottom, as laid out."""
        return self.page.evaluate(
            """() => [...document.querySelectorAll('#runs-table .rt-row')]
                 .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
                 .map(r => r.dataset.id)"""
        )

    def group_series(self, chart: str) -> list[dict]:
        """The lines a chart draws: key, run, label, points, band bounds (when grouped)."""
        return self.page.evaluate(
            """(id) => window.__mudpuppy.app.charts.get(id).series.map(s => ({
                 key: s.key, run: s.run, label: s.runLabel, spec: s.spec,
                 x: Array.from(s.buf.x.subarray(0, s.buf.n)), y: Array.from(s.buf.y.subarray(0, s.buf.n)),
                 lo: s.band ? Array.from(s.band.lo.y.subarray(0, s.band.lo.n)) : null,
                 hi: s.band ? Array.from(s.band.hi.y.subarray(0, s.band.hi.n)) : null}))""",
            chart,
        )

    def drag_zoom(self, chart: str, a: float, b: float) -> None:
        box = self.page.locator(f'[data-chart="{chart}"] .plot').bounding_box()
        g = self.stats()["charts"][chart]
        y = box["y"] + g["top"] + g["height"] / 2
        x0 = box["x"] + g["left"] + a * g["width"]
        x1 = box["x"] + g["left"] + b * g["width"]
        self.page.mouse.move(x0, y)
        self.page.mouse.down()
        self.page.mouse.move((x0 + x1) / 2, y)
        self.page.mouse.move(x1, y)
        self.page.mouse.up()

    def written(self) -> str:
        """The URL once the page has written its current view into it."""
        self.wait("s => s.compare.written === s.compare.fragment")
        return self.page.url

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def tab(browser, server):
    t = Tab(browser, server.url + "/")
    yield t
    t.close()


def test_table_shows_the_differing_keys_and_sorts_by_best_loss(tab):
    page = tab.page
    page.click("#table-toggle")
    page.check("#differs-only")
    tab.wait("s => s.compare.table.configKeys.join() === 'lr,seed'")
    heads = page.eval_on_selector_all(
        "#runs-table .rt-sort.cfg", "els => els.map(e => e.textContent)"
    )
    assert heads == ["lr", "seed"]
    row = page.locator('#runs-table .rt-row[data-id="lr0.0003-seed1"] .rt-cell.cfg')
    assert row.all_text_contents() == ["0.0003", "1"]
    # every config key with "differs only" off
    page.uncheck("#differs-only")
    tab.wait("s => s.compare.table.configKeys.length === 10")
    page.check("#differs-only")

    page.click('#runs-table .rt-sort[data-col="best_loss"]')
    by_best = sorted(IDS, key=lambda r: sweep.best_loss(*_lr_seed(r)))
    tab.wait(f"s => s.compare.table.rows.join() === {','.join(by_best)!r}")
    assert tab.table_order() == by_best
    cells = page.locator(f'#runs-table .rt-row[data-id="{by_best[0]}"] .c-best_loss')
    assert cells.text_content() == f"{sweep.best_loss(*_lr_seed(by_best[0])):.4g}"
    page.click('#runs-table .rt-sort[data-col="best_loss"]')  # again: descending
    tab.wait(f"s => s.compare.table.rows.join() === {','.join(reversed(by_best))!r}")
    assert tab.table_order() == by_best[::-1]
    page.click('#runs-table .rt-sort[data-col="cfg:seed"]')
    # the sort is set at once, the rows on the next frame: wait for the rows
    tab.wait(
        "s => s.compare.table.sort.col === 'cfg:seed'"
        " && s.compare.table.rows.map(r => r.slice(-1)).join() === '0,0,0,1,1,1'"
    )
    order = tab.stats()["compare"]["table"]["rows"]
    assert [_lr_seed(r)[1] for r in order] == [0, 0, 0, 1, 1, 1]
    assert tab.errors == []


def test_table_filter_and_checkboxes_drive_the_sidebar_and_the_charts(tab):
    page = tab.page
    page.click("#table-toggle")
    page.fill("#table-filter", "seed1$")
    tab.wait("s => s.compare.table.rows.length === 3")
    assert page.input_value("#run-filter") == "seed1$"
    assert tab.stats()["overlaid"] == sorted(r for r in IDS if r.endswith("seed1"))
    page.uncheck('#runs-table .rt-row[data-id="lr0.001-seed1"] input')
    tab.wait("s => s.overlaid.length === 2")
    tab.settle()
    assert tab.stats()["charts"]["lr"]["lines"] == 2
    page.click('#runs-table .rt-row[data-id="lr0.0001-seed1"] .c-status')
    tab.wait("s => s.focused === 'lr0.0001-seed1'")
    page.fill("#run-filter", "")
    page.dispatch_event("#run-filter", "input")
    tab.wait("s => s.compare.table.rows.length === 6")


def test_grouping_by_lr_draws_three_mean_lines_with_bands(tab):
    page = tab.page
    page.select_option("#group-by", "lr")
    tab.wait("s => (s.compare.groups.lr || []).length === 3 && s.charts.lr.lines === 3")
    tab.settle()
    st = tab.stats()
    groups = st["compare"]["groups"]["loss"]
    assert [g["label"] for g in groups] == ["lr=0.0001", "lr=0.0003", "lr=0.001"]
    assert [len(g["members"]) for g in groups] == [2, 2, 2]
    assert st["charts"]["lr"]["bands"] == 3
    assert st["charts"]["loss"]["lines"] == 6 and st["charts"]["loss"]["bands"] == 6  # train, eval
    assert st["compare"]["legends"]["loss"]["entries"] == [f"group:{g['label']}" for g in groups]
    labels = page.locator('[data-chart="loss"] .lg-name').all_text_contents()
    assert labels == ["lr=0.0001 (2)", "lr=0.0003 (2)", "lr=0.001 (2)"]
    # the mean and the band at step 60 are those of the two seeds there
    line = next(
        s for s in tab.group_series("loss") if s["run"] == "group:lr=0.001" and s["spec"] == "loss"
    )
    i = min(range(len(line["x"])), key=lambda k: abs(line["x"][k] - 60))
    seeds = [sweep.loss_at(1e-3, s, 60) for s in sweep.SEEDS]
    assert line["y"][i] == pytest.approx(statistics.fmean(seeds), abs=1e-12)
    assert line["lo"][i] == pytest.approx(min(seeds)) and line["hi"][i] == pytest.approx(max(seeds))
    before = tab.canvases()["loss"]
    # ungroup in one click
    page.click("#ungroup")
    tab.wait("s => s.charts.lr.lines === 6 && s.charts.lr.bands === 0")
    assert tab.canvases()["loss"] != before
    assert tab.errors == []


def test_grouping_by_seed_with_a_std_band_and_by_a_name_regex(tab):
    page = tab.page
    page.select_option("#group-by", "seed")
    page.click('[data-band="std"]')
    tab.wait("s => s.compare.band === 'std' && (s.compare.groups.loss || []).length === 2")
    tab.settle()
    line = next(
        s for s in tab.group_series("loss") if s["run"] == "group:seed=1" and s["spec"] == "loss"
    )
    i = min(range(len(line["x"])), key=lambda k: abs(line["x"][k] - 30))
    vals = [sweep.loss_at(lr, 1, 30) for lr in sweep.LRS]
    mu, sd = statistics.fmean(vals), statistics.pstdev(vals)
    assert line["y"][i] == pytest.approx(mu, abs=1e-12)
    assert line["lo"][i] == pytest.approx(mu - sd) and line["hi"][i] == pytest.approx(mu + sd)
    page.select_option("#group-by", "\u0000re")
    page.fill("#group-re", r"(.*)-seed\d+")
    tab.wait("s => s.compare.group && s.compare.group.by === 're' && s.charts.lr.lines === 3")
    labels = [g["label"] for g in tab.stats()["compare"]["groups"]["lr"]]
    assert labels == ["lr0.0001", "lr0.0003", "lr0.001"]
    # on the relative-time axis too (each run from its own start)
    page.select_option("#x-mode", "rel")
    tab.wait("s => s.opts.xMode === 'rel' && s.pending === 0 && s.charts.lr.lines === 3")
    tab.settle()
    assert tab.stats()["charts"]["lr"]["bands"] == 3
    line = next(
        s for s in tab.group_series("loss") if s["run"] == "group:lr0.001" and s["spec"] == "loss"
    )
    assert line["x"][0] == pytest.approx(2.0) and line["x"][-1] == pytest.approx(2.0 * sweep.STEPS)
    page.fill("#group-re", "(")  # not a regex: marked, the grouping stays as it was
    assert "bad" in page.get_attribute("#group-re", "class")
    assert tab.stats()["compare"]["group"]["value"] == r"(.*)-seed\d+"
    assert tab.errors == []


def test_legend_names_every_run_and_marks_the_hovered_one(tab):
    page = tab.page
    st = tab.stats()
    assert st["compare"]["legends"]["lr"]["entries"] == st["overlaid"]
    colours = page.eval_on_selector_all(
        '[data-chart="lr"] .lg-item',
        "els => els.map(e => [e.dataset.run, e.firstChild.style.background])",
    )
    assert len({c for _, c in colours}) > 1
    page.hover('[data-chart="lr"] .lg-item[data-run="lr0.0003-seed0"]')
    tab.wait("s => Object.values(s.charts).every(c => c.highlight === 'lr0.0003-seed0')")
    page.mouse.move(0, 0)
    tab.wait("s => Object.values(s.charts).every(c => c.highlight === null)")
    # hovering the chart marks the entry of the line under the pointer
    g = tab.stats()["charts"]["loss"]
    box = page.locator('[data-chart="loss"] .plot').bounding_box()
    target, step = "lr0.001-seed0", 100
    v = sweep.loss_at(1e-3, 0, step)
    px = box["x"] + g["left"] + (step - g["x0"]) / (g["x1"] - g["x0"]) * g["width"]
    py = box["y"] + g["top"] + (g["ymax"] - v) / (g["ymax"] - g["ymin"]) * g["height"]
    page.mouse.move(px, py)
    tab.wait(f"s => s.compare.legends.loss.hot === {target!r}")
    assert (
        page.get_attribute(f'[data-chart="loss"] .lg-item[data-run="{target}"]', "class")
        == "lg-item hot"
    )


def test_a_copied_link_restores_the_same_view_in_a_fresh_context(browser, tab):
    page = tab.page
    for run in ("lr0.0001-seed0", "lr0.001-seed1"):
        page.uncheck(f'#run-list li[data-id="{run}"] input')
    page.click('#run-list li[data-id="lr0.0003-seed1"]')
    page.eval_on_selector(
        "#smoothing", "e => { e.value = '0.6'; e.dispatchEvent(new Event('input')); }"
    )
    page.check("#log-y")
    page.click('[data-chart="thru"] button[data-variant="1"]')
    page.click("#table-toggle")
    page.click('#runs-table .rt-sort[data-col="best_loss"]')
    tab.drag_zoom("loss", 0.25, 0.7)
    tab.wait("s => s.view !== null")
    page.select_option("#group-by", "lr")
    tab.wait("s => (s.compare.groups.loss || []).length === 3")
    tab.settle()
    link = tab.written()
    page.mouse.move(0, 0)
    tab.settle()
    want = tab.stats()
    pixels = tab.canvases()
    assert "zoom=" in link and "sel=" in link and "group=key%3Alr" in link

    other = Tab(browser, link)
    try:
        other.wait("s => s.view !== null && (s.compare.groups.loss || []).length === 3")
        other.settle()
        got = other.stats()
        for key in ("selected", "overlaid", "focused", "view", "opts"):
            assert got[key] == want[key], key
        assert got["compare"]["group"] == want["compare"]["group"]
        assert got["compare"]["table"]["rows"] == want["compare"]["table"]["rows"]
        assert got["compare"]["tableOpen"]
        assert other.canvases() == pixels
        assert other.errors == []
    finally:
        other.close()
    # a reload of the same page restores it too
    page.reload()
    tab.wait(LOADED + " && s.view !== null")
    tab.wait("s => (s.compare.groups.loss || []).length === 3")
    tab.settle()
    page.mouse.move(0, 0)
    tab.settle()
    assert tab.canvases() == pixels


def test_a_notification_link_focuses_its_run(browser, server):
    t = Tab(browser, server.url + "/#run=lr0.0003-seed0")
    try:
        t.wait("s => s.focused === 'lr0.0003-seed0'")
        st = t.stats()
        assert "lr0.0003-seed0" in st["overlaid"]
        assert "focus=lr0.0003-seed0" in t.written()
    finally:
        t.close()


def test_a_mangled_link_leaves_the_defaults(browser, server):
    bad = "#zoom=abc,1&x=bogus&group=re:(&smooth=NaN&sort=x&table=2&variant=%00:9&focus=nope"
    t = Tab(browser, server.url + "/" + bad)
    try:
        st = t.stats()
        assert st["view"] is None and st["opts"] == {"smoothing": 0, "logY": False, "xMode": "step"}
        assert st["compare"]["group"] is None and not st["compare"]["tableOpen"]
        assert st["overlaid"] == sorted(IDS)
        assert t.errors == []
    finally:
        t.close()


def test_snapshot_opens_from_disk_with_no_request_leaving_the_page(browser, root, tmp_path):
    out = tmp_path / "report.html"
    assert main(["snapshot", str(root), "-o", str(out)]) == 0
    url = out.resolve().as_uri()
    t = Tab(browser, url)
    try:
        t.wait("s => s.charts.loss.lines === 12 && s.lora.layers === 4")
        t.settle()
        assert t.requests == [url]
        assert t.sockets == []
        assert t.errors == []
        st = t.stats()
        assert st["runs"] == sorted(IDS)
        for run_id in IDS:
            summary = t.page.evaluate(f"window.__mudpuppy.app.store.summary({run_id!r})")
            assert summary["step"] == sweep.STEPS and summary["status"] == "completed"
        lasts = {s["key"].split("\u0000")[0]: s["last"] for s in st["charts"]["loss"]["series"]}
        assert lasts == dict.fromkeys(IDS, sweep.STEPS)
        bright = t.page.evaluate(
            """() => { const c = document.querySelector('[data-chart="loss"] canvas');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0; for (let i = 0; i < d.length; i += 4) if (Math.max(d[i], d[i+1], d[i+2]) > 150) n++;
                 return n; }"""
        )
        assert bright > 1000
        # the table and the grouping work from the embedded data
        t.page.click("#table-toggle")
        t.page.check("#differs-only")
        t.wait("s => s.compare.table.configKeys.join() === 'lr,seed'")
        t.page.select_option("#group-by", "lr")
        t.wait("s => s.charts.lr.lines === 3 && s.charts.lr.bands === 3")
        assert t.page.is_hidden("#conn") and t.page.is_visible(".snapshot-badge")
        assert t.requests == [url]
    finally:
        t.close()


def test_snapshot_button_downloads_the_overlaid_runs_in_the_current_view(browser, tab, tmp_path):
    page = tab.page
    page.uncheck('#run-list li[data-id="lr0.0001-seed1"] input')
    page.select_option("#group-by", "lr")
    tab.drag_zoom("loss", 0.1, 0.9)
    tab.wait("s => s.view !== null && s.overlaid.length === 5")
    tab.settle()
    want = tab.stats()
    with page.expect_download() as info:
        page.click("#snapshot")
    path = Path(tmp_path / "snap.html")
    info.value.save_as(path)
    t = Tab(browser, path.resolve().as_uri())
    try:
        t.wait("s => s.view !== null && (s.compare.groups.loss || []).length === 3")
        got = t.stats()
        assert got["runs"] == want["overlaid"]
        assert got["overlaid"] == want["overlaid"] and got["view"] == want["view"]
        assert t.requests == [path.resolve().as_uri()]
        assert t.errors == []
    finally:
        t.close()


def _lr_seed(run_id: str) -> tuple[float, int]:
    lr, seed = run_id.removeprefix("lr").split("-seed")
    return float(lr), int(seed)
