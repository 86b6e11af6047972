"""The dashboard's output panel in a real browser against a real server: the tail of the focused
run's output.log, then the streamed lines; text always text; colours as classes; follows the end
unless scrolled up; a reconnect shows what a fresh load shows."""

from __future__ import annotations

import re

import pytest

from mudpuppy_monitor.launch.output import LineSplitter, OutputLog
from mudpuppy_monitor.tracebacks import strip_ansi
from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "&lt;b&gt; &amp; \x1b]0;retitled\x07 \x1b[2J \x07 done",
]


def tee(log: OutputLog, text: str) -> None:
    log.write(LineSplitter().feed(text.encode(), 0.0))


@pytest.fixture
def job(tmp_path):
    run = RunDir(tmp_path, "job")
    for step in range(1, 6):
        run.metrics(step, loss=1.0 / step)
    log = OutputLog(run.path)
    tee(log, "".join(f"\x1b[31mred {i}\x1b[0m plain {i}\n" for i in range(10_000)))
    tee(log, "\n".join(HOSTILE) + "\n")
    log.write(b" 10%|#  |\r\n 20%|## |\r\n")  # progress-bar snapshots: only the newest shows
    yield run, log
    log.close()


def panel_text(page: Page) -> list[str]:
    return page.page.evaluate(
        "[...document.querySelectorAll('#log-body .line')].map((d) => d.textContent)"
    )


def test_the_log_panel_shows_the_output_as_text(browser, job, tmp_path) -> None:
    run, log = job
    with LiveServer(tmp_path) as server:
        page = Page(browser, server)
        try:
            page.wait("s => s.log.run === 'job' && s.log.end !== null && s.log.lines.length > 0")
            lines = panel_text(page)
            # the tail asked for (500 lines), the snapshot superseded by the next one left out
            assert lines[-1] == " 20%|## |"
            assert lines[-4:-1] == [
                "<script>window.__pwned = 1</script>",
                '<img src=x onerror="window.__pwned = 2">',
                "&lt;b&gt; &amp;    done",  # OSC title, screen clear and BEL dropped
            ]
            assert lines[-5] == "red 9999 plain 9999" and len(lines) == 499
            body = page.page.locator("#log-body")
            assert body.locator("script, img").count() == 0
            assert page.page.evaluate("window.__pwned") is None
            assert "\x1b" not in "".join(lines)
            red = page.page.evaluate(
                "[...document.querySelectorAll('#log-body .line')].at(-5).firstElementChild"
                "?.className"
            )
            assert red == "ansi-fg-1"
            # it follows the end: a new line shows and the view stays at the bottom
            tee(log, "one more\n")
            page.wait("s => s.log.lines.at(-1) === 'one more'")
            assert panel_text(page)[-2] == "&lt;b&gt; &amp;    done"  # the snapshot went
            at_end = "(b) => b.scrollTop + b.clientHeight >= b.scrollHeight - 8"
            assert body.evaluate(at_end)
            # scrolled up, it stays where the user put it
            body.evaluate("(b) => { b.scrollTop = 0; b.dispatchEvent(new Event('scroll')); }")
            page.wait("s => s.log.follow === false")
            tee(log, "while reading\n")
            page.wait("s => s.log.lines.at(-1) === 'while reading'")
            assert body.evaluate("(b) => b.scrollTop") == 0
            assert page.page.locator("#log-panel.paused").count() == 1
            # after the server restarts, the panel equals a fresh load of the tail
            server.restart()
            tee(log, "after the restart\n")
            page.wait("s => s.conn === 'live' && s.log.lines.at(-1) === 'after the restart'")
            page.wait("s => s.log.fetches >= 2")
            fresh = server.get_json("/api/runs/job/log?tail=500")["lines"]
            expect = [x for x in fresh if not x.endswith("\r")]  # no snapshot is the last line
            got = panel_text(page)
            # as the page shows text: escape sequences and other control characters dropped
            assert got == [re.sub("[\x00-\x08\x0b-\x1f\x7f]", "", strip_ansi(x)) for x in expect]
            assert page.errors == []
        finally:
            page.close()
