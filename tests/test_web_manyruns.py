"""Many runs in the dashboard, in a real browser against a real server: a bounded default
overlay, batched loads, a virtual run list, and the filter and `all` that reach every run."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

RUNS = 60
T0 = time.time() - 3600  # finished an hour ago: no alerts, no stalls


def run_id(k: int) -> str:
    return f"r-{k:02d}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for k in range(RUNS):  # run k's last event is at T0 + k: the higher k, the more recent
        run = RunDir(root, run_id(k), max_steps=5, start=False)
        for s in range(1, 6):
            run.metrics(s, t=T0 + k - 5 + s, loss=2.0 - s / 10 + k / 100)
        run.end("completed", step=5, t=T0 + k)
        made[run.id] = run
    return root, made


@pytest.fixture(scope="module")
def server(runs):
    with LiveServer(runs[0]) as srv:
        yield srv


@pytest.fixture
def dash(browser, server):
    p = Page(browser, server)
    yield p
    p.close()


NEWEST = [run_id(k) for k in range(RUNS - 20, RUNS)]
FOCUSED_PANEL = re.compile(r"/api/runs/[^?]+/(samples|log)\?")


def test_the_twenty_most_recent_runs_are_overlaid_with_one_request(dash, server):
    dash.wait("s => s.overlaid.length === 20 && s.charts.loss.lines === 20 && s.loads >= 20")
    s = dash.stats()
    assert s["overlaid"] == NEWEST
    assert s["runs"] == sorted(run_id(k) for k in range(RUNS))
    assert s["requests"] == 1  # every overlaid run in one POST api/series
    api = [u for u in dash.urls if "/api/" in u]
    assert [u for u in api if u.endswith("/api/series")] == [f"{server.url}/api/series"]
    # no per-run detail or series request (the focused run's samples and output panels ask
    # for their own)
    assert not [u for u in api if "/api/runs/" in u and not FOCUSED_PANEL.search(u)]
    assert len(dash.urls) < 50, dash.urls
    assert dash.page.text_content("#run-note") == (
        "20 most recent of 60 overlaid \u00b7 all overlays every shown run"
    )
    assert dash.errors == []


def test_the_run_list_holds_only_the_rows_in_view(dash):
    dash.wait_text("#run-count", "60/60")
    ids = dash.page.eval_on_selector_all("#run-list li", "els => els.map(e => e.dataset.id)")
    assert 10 <= len(ids) < RUNS
    assert ids == sorted(ids) and ids[0] == run_id(0)
    row_px = dash.page.evaluate("window.__mudpuppy.app.sidebar.rowPx")
    assert row_px == 43  # the fixed row height of style.css, as measured
    # the scrollbar covers every run: padding stands in for the rows out of view
    height = dash.page.evaluate("document.querySelector('#run-scroll').scrollHeight")
    assert height >= RUNS * row_px
    dash.page.evaluate("document.querySelector('#run-scroll').scrollTop = 1e6")
    last = run_id(RUNS - 1)
    dash.page.wait_for_selector(f'#run-list li[data-id="{last}"]')
    ids = dash.page.eval_on_selector_all("#run-list li", "els => els.map(e => e.dataset.id)")
    assert run_id(0) not in ids and len(ids) < RUNS
    # the row sits where a full list would have put it
    got = dash.page.evaluate(
        f"""() => {{
          const list = document.querySelector('#run-list');
          const li = list.querySelector('li[data-id="{last}"]');
          return [li.offsetTop - list.firstElementChild.offsetTop, list.style.paddingTop];
        }}"""
    )
    first_shown = ids[0]
    assert got[0] == (RUNS - 1 - int(first_shown[2:])) * row_px
    assert got[1] == f"{int(first_shown[2:]) * row_px}px"
    # a click on a row far down focuses its run
    dash.page.click(f'#run-list li[data-id="{last}"] .name')
    dash.wait(f"s => s.focused === '{last}'")


def test_the_filter_reaches_runs_outside_the_default_overlay(dash):
    dash.wait("s => s.overlaid.length === 20 && s.pending === 0")
    dash.page.fill("#run-filter", "^r-0[0-4]$")
    dash.wait("s => s.overlaid.length === 5 && s.pending === 0 && s.charts.loss.lines === 5")
    s = dash.stats()
    assert s["overlaid"] == [run_id(k) for k in range(5)]
    assert s["requests"] == 2  # the five loaded together
    ids = dash.page.eval_on_selector_all("#run-list li", "els => els.map(e => e.dataset.id)")
    assert ids == [run_id(k) for k in range(5)]
    assert dash.page.text_content("#run-count") == "5/60"
    dash.page.fill("#run-filter", "")
    dash.wait("s => s.overlaid.length === 20 && s.charts.loss.lines === 20")
    assert dash.stats()["overlaid"] == NEWEST


def test_all_overlays_every_run_and_none_clears(dash):
    dash.wait("s => s.overlaid.length === 20 && s.pending === 0")
    before = dash.stats()["requests"]
    dash.page.click("#select-all")
    dash.wait(
        f"s => s.overlaid.length === {RUNS} && s.pending === 0 && s.charts.loss.lines === {RUNS}"
    )
    assert dash.stats()["requests"] == before + 1  # the 40 others in one request
    assert dash.page.text_content("#run-note") == ""
    dash.page.click("#select-none")
    dash.wait("s => s.overlaid.length === 0")
    # the user picked: a filter no longer chooses for them
    dash.page.fill("#run-filter", "r-1")
    dash.page.wait_for_timeout(200)
    assert dash.stats()["overlaid"] == []


def test_a_new_run_enters_the_default_overlay_and_the_oldest_leaves(browser, server, runs):
    dash = Page(browser, server)
    try:
        dash.wait("s => s.overlaid.length === 20 && s.pending === 0")
        fresh = RunDir(runs[0], "r-new", max_steps=5)
        fresh.metrics(1, loss=1.0)
        dash.wait("s => s.overlaid.includes('r-new') && s.overlaid.length === 20", timeout=15_000)
        s = dash.stats()
        assert run_id(RUNS - 20) not in s["overlaid"]  # the least recent of the twenty
        dash.wait("s => s.charts.loss.lines === 20 && s.pending === 0")
        assert dash.errors == []
    finally:
        dash.close()


def test_points_per_run_and_the_batcher(dash):
    got = dash.page.evaluate(
        """async () => {
          const sel = await import('/selection.js');
          const b = await import('/batch.js');
          const sent = [];
          const batcher = new b.Batcher(async (ids, q) => {
            sent.push([ids.length, q.x, q.from ?? null]);
            if (ids.includes('fail-0')) throw new Error('HTTP 500');
            return { runs: new Map(ids.filter((id) => id !== 'gone').map((id) => [id, { id }])) };
          });
          const q = { names: ['loss'], x: 'step', points: 200 };
          const asks = [];
          for (let i = 0; i < 250; i++) asks.push(batcher.ask(`r${i}`, q));
          asks.push(batcher.ask('r0', q));                       // asked twice: sent once
          asks.push(batcher.ask('gone', q));
          asks.push(batcher.ask('r1', { ...q, from: 1, to: 2 })); // another query
          const got = await Promise.all(asks);
          const failed = await Promise.allSettled([batcher.ask('fail-0', q), batcher.ask('x', q)]);
          return {
            points: [1, 20, 21, 100, 200, 5000].map(sel.pointsPerRun),
            sent, twice: got[250].id, gone: got[251], requests: batcher.requests,
            failed: failed.map((r) => r.status),
          };
        }"""
    )
    assert got["points"] == [2000, 2000, 1905, 400, 200, 200]
    assert got["sent"][:3] == [[100, "step", None], [100, "step", None], [51, "step", None]]
    assert got["sent"][3] == [1, "step", 1]
    assert (got["twice"], got["gone"]) == ("r0", None)
    assert got["failed"] == ["rejected", "rejected"]  # one request: both asks fail with it
    assert got["requests"] == 5
