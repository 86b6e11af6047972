"""The dashboard's own alerts in headless Chromium: the NOTIFY toggle asks for permission only
when clicked, an alert raises a desktop Notification and counts in the tab title while the page
is not in front (from the daemon's `news`, decided by the notification rules), the optional
WebAudio tone, and `#run=<id>` links."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

# Wraps the browser's Notification before the page's scripts run: every construction and every
# permission request is recorded, and the real API still does the work.
PROBE = """
(() => {
  const Real = window.Notification;
  if (typeof Real !== "function") return;
  const probe = { made: [], asked: 0 };
  function Probe(title, options) {
    const n = new Real(title, options);
    probe.made.push({ title, body: options && options.body, tag: options && options.tag, n });
    return n;
  }
  Probe.requestPermission = (...args) => { probe.asked += 1; return Real.requestPermission(...args); };
  Object.defineProperty(Probe, "permission", { get: () => Real.permission });
  window.Notification = Probe;
  window.__probe = probe;
})();
"""
MADE = "window.__probe.made.map(m => ({title: m.title, body: m.body, tag: m.tag}))"


@pytest.fixture
def runs(tmp_path):
    done = RunDir(tmp_path, "beta", max_steps=10)
    for s in range(1, 11):
        done.metrics(s, t=time.time() - 100 + s, loss=1.0 / s)
    done.end("completed", step=10)
    live = RunDir(tmp_path, "alpha", max_steps=1000, meta={"name": "<i>alpha</i>"})
    for s in range(1, 11):
        live.metrics(s, loss=2.0 - s / 10)
    return tmp_path, live


@contextmanager
def _dashboard(browser, root, **page_options):
    """A server on `root` and a dashboard page on it (Page's options), both closed after."""
    with LiveServer(root) as server:
        dash = Page(browser, server, **page_options)
        try:
            yield server, dash
        finally:
            dash.close()


def _until(page, expr: str, timeout: float = 10_000) -> None:
    # polled on a timer: a page that is not in front gets no animation frames
    page.wait_for_function(f"() => {expr}", polling=100, timeout=timeout)


def _away(dash: Page):
    """Another tab in front: the dashboard loses the focus, as when the user looks elsewhere."""
    other = dash.ctx.new_page()
    dash.ctx.new_cdp_session(other).send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other.bring_to_front()
    _until(dash.page, "!document.hasFocus()")
    return other


def test_toggle_asks_only_on_click_and_an_alert_notifies_and_counts_in_the_title(browser, runs):
    root, live = runs
    other_run = RunDir(root, "gamma", max_steps=1000)
    for s in range(1, 4):
        other_run.metrics(s, loss=1.0)
    with _dashboard(browser, root, permissions=("notifications",), init_script=PROBE,
                    real_focus=True) as (_, dash):  # fmt: skip
        page = dash.page
        assert page.evaluate("window.__probe.asked") == 0  # never on load
        assert page.text_content("#notify-toggle") == "NOTIFY OFF"
        assert dash.stats()["notify"]["enabled"] is False
        page.click("#notify-toggle")
        dash.wait("s => s.notify.enabled")
        assert page.evaluate("window.__probe.asked") == 1
        assert page.text_content("#notify-toggle") == "NOTIFY ON"
        assert page.evaluate("localStorage.getItem('mudpuppy.notify')") == "on"

        # news while the page is in front is seen: its toast is enough
        other_run.metrics(4, loss=5.0, grad_norm=float("inf"))
        page.wait_for_function("() => document.querySelectorAll('#toasts .toast').length > 0")
        dash.wait("s => s.notify.news === 1")  # the news came too, and raised nothing
        assert page.evaluate(MADE) == [] and page.title() == "mudpuppy-monitor"

        other = _away(dash)
        live.metrics(12, loss=float("nan"))
        _until(page, "window.__probe.made.length === 1")
        [made] = page.evaluate(MADE)
        assert made == {
            "title": "mudpuppy: <i>alpha</i> non-finite value",
            "body": "loss is NaN at step 12",
            "tag": "mudpuppy:alpha:nonfinite",
        }
        assert page.title() == "(1) mudpuppy-monitor"
        assert page.locator("#toasts i").count() == 0  # the name is text, not markup

        live.end("completed", step=12)
        _until(page, "window.__probe.made.length === 2")
        assert page.evaluate(MADE)[1]["title"] == "mudpuppy: <i>alpha</i> completed"
        assert page.title() == "(2) mudpuppy-monitor"

        # back in front: the alerts are seen
        page.bring_to_front()
        page.wait_for_function("() => document.title === 'mudpuppy-monitor'")
        assert dash.stats()["notify"]["unseen"] == 0
        other.close()

        # a click on the notification opens its run
        page.click('#run-list li[data-id="beta"] .name')
        dash.wait("s => s.focused === 'beta'")
        page.evaluate("window.__probe.made[0].n.onclick()")
        dash.wait("s => s.focused === 'alpha'")
        _until(page, "location.hash.includes('focus=alpha')")  # the address names the run
        assert dash.errors == []


def test_the_switch_is_remembered_without_asking_again(browser, runs):
    root, _ = runs
    with _dashboard(browser, root, permissions=("notifications",), init_script=PROBE) as (_, dash):
        dash.page.click("#notify-toggle")
        dash.wait("s => s.notify.enabled")
        dash.page.reload()
        dash.wait("s => s.conn === 'live' && s.notify.permission === 'granted'")
        assert dash.stats()["notify"]["enabled"] is True
        assert dash.page.evaluate("window.__probe.asked") == 0
        dash.page.click("#notify-toggle")  # off again, remembered too
        dash.wait("s => !s.notify.enabled")
        assert dash.page.evaluate("localStorage.getItem('mudpuppy.notify')") == "off"


def test_a_denied_permission_leaves_the_toggle_off_and_says_so(browser, runs):
    root, _ = runs
    with _dashboard(browser, root, init_script=PROBE) as (server, dash):
        # the user said no to this site before: the browser answers at once
        cdp = dash.ctx.new_cdp_session(dash.page)
        cdp.send("Browser.setPermission", {"permission": {"name": "notifications"},
                                           "setting": "denied", "origin": server.url})  # fmt: skip
        dash.page.click("#notify-toggle")
        dash.wait("s => s.notify.permission === 'denied'")
        dash.wait_text("#notify-toggle", "NOTIFY BLOCKED")
        assert dash.page.evaluate("window.__probe.asked") == 1
        assert dash.stats()["notify"]["enabled"] is False
        assert dash.page.evaluate("localStorage.getItem('mudpuppy.notify')") is None


def test_sound_is_off_by_default_and_plays_a_generated_tone(browser, runs):
    root, live = runs
    with _dashboard(browser, root, real_focus=True) as (_, dash):
        assert dash.stats()["notify"]["sound"] is False
        assert dash.page.is_checked("#notify-sound") is False
        dash.page.check("#notify-sound")  # the click lets audio start; a test tone plays
        dash.wait("s => s.notify.sounds === 1 && s.notify.audio === 'running'")
        assert dash.page.evaluate("localStorage.getItem('mudpuppy.sound')") == "on"
        other = _away(dash)
        live.metrics(11, loss=float("nan"))
        _until(dash.page, "window.__mudpuppy.stats().notify.sounds === 2")
        assert dash.stats()["notify"]["notifications"] == 0  # the switch is off
        other.close()
        # no request for an audio file: the tone is made in the page
        assert not [u for u in dash.urls if u.endswith((".mp3", ".ogg", ".wav"))]


def test_a_run_link_opens_the_dashboard_on_that_run(browser, runs):
    root, _ = runs
    with LiveServer(root) as server:
        plain = Page(browser, server)
        try:
            plain.wait("s => s.focused !== null")
            assert plain.stats()["focused"] == "alpha"  # the newest running run, by default
        finally:
            plain.close()
        linked = Page(browser, server, path="/#run=beta")
        try:
            linked.wait("s => s.focused === 'beta'")
            assert "beta" in linked.stats()["overlaid"]
            linked.page.evaluate("location.hash = '#run=alpha'")
            linked.wait("s => s.focused === 'alpha'")
            linked.page.evaluate("location.hash = '#run=%E0%A4%A'")  # malformed: ignored
            time.sleep(0.2)
            assert linked.stats()["focused"] == "alpha"
            assert linked.errors == []
        finally:
            linked.close()
