"""Text from the root cannot reorder or break what the dashboard shows: run names, ids, hosts,
errors, alerts, tooltips and the GPU panel's run names go through one helper (format.js
`inert`) that replaces control characters and Unicode bidi controls, as the terminal views do."""

from __future__ import annotations

import math

import pytest

from mudpuppy_monitor.gpu.fake import fake_uuid
from mudpuppy_monitor.inert import inert
from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

SPOOF = "uni-\u202etxt.exe"  # reads "uni-exe.txt" when the override is obeyed
HOST = "gpu\u202ebox\x1b[2J"
ERROR = "boom\u2066 here\nnext\x1b]0;pwn\x07 \u200f\u061c"
LIVE = "li\u2067ve\u0085"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spoof = RunDir(root, "uni", meta={"name": SPOOF, "host": HOST})
    for s in range(1, 21):
        spoof.metrics(s, loss=2.0 - s / 20)
    spoof.end("failed", step=20, error=ERROR)
    live = RunDir(root, "live\u202ex", meta={"name": LIVE, "gpus": [fake_uuid(0, 0)]})
    for s in range(1, 21):
        live.metrics(s, loss=1.0 + s / 100)
    return root, live


@pytest.fixture(scope="module")
def server(runs):
    with LiveServer(runs[0], gpu="fake") as srv:
        yield srv


@pytest.fixture
def dash(browser, server):
    p = Page(browser, server)
    yield p
    p.close()


def test_the_page_neutralises_exactly_what_the_terminal_views_do(dash):
    chars = [chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF] + ["\ufeff", "\U0001f600"]
    text = "".join(chars)
    got = dash.page.evaluate(
        "async (t) => { const f = await import('/format.js'); return f.inert(t); }", text
    )
    assert got == inert(text)
    assert dash.page.evaluate(
        "async () => { const f = await import('/format.js'); return [f.inert(null), f.inert(7)]; }"
    ) == ["", "7"]


def test_names_ids_hosts_and_errors_are_shown_inert(dash):
    row = '#run-list li[data-id="uni"]'
    assert dash.page.text_content(f"{row} .name") == "uni-?txt.exe"
    assert dash.page.get_attribute('#run-list li[data-id="live\u202ex"] .name', "title") == "live?x"
    dash.page.click(f"{row} .name")
    dash.wait("s => s.focused === 'uni' && s.banner === 'crashed'")
    dash.wait_text("#focus-name", "uni-?txt.exe")
    assert "gpu?box?[2J" in dash.page.text_content("#focus-meta")
    banner = dash.page.text_content("#banner")
    assert banner == "FAILED at step 20 \u00b7 boom? here?next?]0;pwn? ??"
    assert dash.page.get_attribute("#export-csv", "title") == "full-fidelity csv export of uni"
    # the tooltip and legend label of the focused line
    dash.page.fill("#run-filter", "^uni$")
    dash.wait("s => s.overlaid.length === 1 && s.charts.loss.lines === 1")
    box = dash.page.locator('[data-chart="loss"] .plot').bounding_box()
    s = dash.stats()["charts"]["loss"]
    dash.page.mouse.move(box["x"] + s["left"] + s["width"] / 2, box["y"] + s["top"] + 30)
    dash.page.wait_for_selector('[data-chart="loss"] .tip.on')
    names = dash.page.eval_on_selector_all(
        '[data-chart="loss"] .tip .tipname', "els => els.map(e => e.textContent)"
    )
    assert names == ["uni-?txt.exe"]
    for text in dash.page.eval_on_selector_all("body *", "els => els.map(e => e.textContent)"):
        assert "\u202e" not in text and "\x1b" not in text


def test_alerts_and_the_gpu_panel_show_names_inert(dash, runs):
    dash.page.wait_for_selector(".gpu-run")
    assert "li?ve?" in dash.page.eval_on_selector_all(
        ".gpu-run", "els => els.map(e => e.textContent)"
    )
    runs[1].metrics(21, loss=math.nan)  # a live NaN: an alert, shown as a toast
    dash.page.wait_for_selector("#toasts .toast.nonfinite")
    assert dash.page.text_content("#toasts .toast.nonfinite").startswith("li?ve?: ")
