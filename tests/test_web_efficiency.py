"""Efficiency in the dashboard (headless chromium against a real server): the stat bar cells, the
efficiency chart, and the reason the page gives when the figures are unknown."""

from __future__ import annotations

import threading

import pytest

from tests.browser import needs_chromium
from tests.serverutil import LiveServer
from tests.test_efficiency_live import PEAK_TFLOPS, write_run
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

REASON = "no GPU sampling (GPU sampling turned off)"


def cell(page: Page, key: str) -> str:
    return page.page.inner_text(f'#stats [data-stat="{key}"]')


def test_without_gpu_sampling_the_page_says_why(browser, tmp_path) -> None:
    with LiveServer(tmp_path, gpu="none") as server:
        write_run(tmp_path, seconds=0.6)
        page = Page(browser, server)
        try:
            page.wait("s => s.summary && s.summary.status === 'completed'")
            page.wait_text("#eff-note", f"efficiency unknown: {REASON}")
            assert page.page.is_visible("#eff-note")
            for key in ("mfu", "jpt", "kwh"):
                assert cell(page, key) == "\u2014"
                assert page.page.get_attribute(f'#stats [data-stat="{key}"]', "title") == REASON
            empty = '[data-chart="eff"] .chart-empty'
            assert page.page.inner_text(empty) == f"no efficiency points: {REASON}"
            assert page.page.is_visible(empty)
            stats = page.stats()
            assert stats["charts"]["eff"]["lines"] == 0
            assert stats["efficiency"]["note"] == f"efficiency unknown: {REASON}"
            assert page.errors == []
        finally:
            page.close()


def test_with_the_fake_gpu_the_cells_and_the_chart_fill_in_live(browser, tmp_path) -> None:
    settings = dict(gpu="fake", gpu_interval_s=0.2, efficiency_interval_s=1.0)
    with LiveServer(tmp_path, peak_tflops=PEAK_TFLOPS, **settings) as server:
        writer = threading.Thread(target=write_run, args=(tmp_path, 4.0))
        writer.start()  # the page opens on the run while it trains
        page = None
        try:
            page = Page(browser, server)
            page.page.click('#run-list li[data-id="eff"]')
            page.wait("s => s.focused === 'eff' && s.summary.status === 'completed'", 20_000)
            writer.join()
            page.wait("s => s.charts.eff.lines > 0")
            summary = server.get_json("/api/runs/eff")["summary"]
            assert summary["mfu"] is not None and summary["joules_per_token"] is not None
            page.wait_text('#stats [data-stat="mfu"]', fmt_js(page, "fmtMfu", summary["mfu"]))
            assert float(cell(page, "mfu").rstrip("%")) == pytest.approx(
                summary["mfu"] * 100, rel=5e-3
            )
            assert float(cell(page, "jpt")) == pytest.approx(summary["joules_per_token"], rel=5e-3)
            # the figures come from simulated GPUs: the page says so
            assert page.page.inner_text("#eff-note") == (
                "efficiency from SIMULATED GPUs (fake backend)"
            )
            assert not page.page.is_visible('[data-chart="eff"] .chart-empty')
            # the J/token variant draws its own series
            page.page.click('[data-chart="eff"] button[data-variant="1"]')
            page.wait("s => s.charts.eff.lines > 0")
            assert page.errors == []
        finally:
            writer.join()
            if page is not None:
                page.close()


def fmt_js(page: Page, name: str, value: float) -> str:
    return page.page.evaluate(
        "async ([name, v]) => (await import('./efficiency.js'))[name](v)", [name, value]
    )
