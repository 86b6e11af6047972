"""The samples panel in a real browser (Debian chromium via Playwright) against a real server,
over a run written by the real writer: markup in prompts and completions stays text, the word
diff between two steps, the truncation mark, and an event streamed while the page is open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import RunWriter

from tests.browser import needs_chromium
from tests.serverutil import LiveServer

pytestmark = needs_chromium

# an event handler that would set a flag if the text ever became markup
XSS_PROMPT = '<img src=x onerror="window.__pwned=1">Describe <b>this</b>'
XSS_COMPLETION = "<img src=x onerror=window.__pwned=2><script>window.__pwned=3</script> & done"
STORY = "Tell a story"
STORIES = {
    5: "once upon a time",
    10: "once upon a long time ago",
    15: "twice upon a long time ago there",
}
BIG = "x" * 20_000

# Before any page script: once the page's own HTML is parsed, record every element that shows up
# anywhere in the document with a tag that runs or loads something, or with an inline event
# handler attribute; and every failed image load (an <img src=x> fires `error`).
WATCH = """
window.__injected = [];
window.__imgErrors = 0;
const bad = (n) => n.nodeType === 1 && (['IMG', 'SCRIPT', 'IFRAME', 'OBJECT', 'SVG'].includes(n.tagName.toUpperCase())
  || [...n.attributes].some((a) => a.name.toLowerCase().startsWith('on')));
const watch = new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (bad(n)) window.__injected.push(n.outerHTML);
    if (n.querySelectorAll) for (const c of n.querySelectorAll('*')) if (bad(c)) window.__injected.push(c.outerHTML);
  }
});
document.addEventListener('DOMContentLoaded', () => {
  watch.observe(document, { childList: true, subtree: true, attributes: true });
});
window.addEventListener('error', (e) => { if (e.target && e.target.tagName === 'IMG') window.__imgErrors += 1; }, true);
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, RunWriter]]:
    root = tmp_path_factory.mktemp("runs")
    run = RunWriter(root, name="chat")
    for step in range(1, 16):
        run.log(step, {"loss": 2.0 / step})
        if step % 5 == 0:
            items = [
                {"prompt": STORY, "completion": STORIES[step]},
                {"prompt": XSS_PROMPT, "completion": XSS_COMPLETION},
                {"prompt": "long", "completion": BIG},
            ]
            run.log_samples(step, items, took_s=0.25)
    with run, LiveServer(root) as server:
        yield server, run


@pytest.fixture
def page(browser: Any, setup: tuple[LiveServer, RunWriter]) -> Iterator[Any]:
    server, _ = setup
    ctx = browser.new_context(viewport={"width": 1440, "height": 1400})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.add_init_script(WATCH)
    pg.goto(server.url + "/")
    wait(pg, "s => s.focused === 'chat' && s.samples.events >= 3")
    yield pg
    assert errors == []
    ctx.close()


def wait(pg: Any, predicate: str, timeout: float = 10_000) -> None:
    pg.wait_for_function(
        f"() => window.__mudpuppy && ({predicate})(window.__mudpuppy.stats())", timeout=timeout
    )


def stats(pg: Any) -> dict[str, Any]:
    return pg.evaluate("window.__mudpuppy.stats().samples")


def choose_prompt(pg: Any, prompt: str) -> None:
    index = stats(pg)["prompts"].index(prompt)
    pg.select_option("#samples-prompt", str(index))
    wait(pg, f"s => s.samples.prompt === {prompt!r}")


def text(pg: Any, selector: str) -> str:
    return pg.eval_on_selector(selector, "e => e.textContent")


def test_markup_in_prompts_and_completions_is_shown_as_text(page: Any) -> None:
    choose_prompt(page, XSS_PROMPT)
    page.select_option("#samples-compare", "none")
    wait(page, f"s => s.samples.shown && s.samples.shown.completion === {XSS_COMPLETION!r}")
    page.wait_for_timeout(300)  # a frame or two: anything an image would do has happened
    assert text(page, "#samples-prompt-text") == XSS_PROMPT
    assert text(page, "#samples-view") == XSS_COMPLETION
    rows = page.eval_on_selector_all(
        "#samples-list .sample-text", "els => els.map(e => e.textContent)"
    )
    assert rows == [XSS_COMPLETION] * 3
    picker = page.eval_on_selector_all(
        "#samples-prompt option", "els => els.map(e => e.textContent)"
    )
    assert picker == [STORY, '<img src=x onerror="window.__pwned=1">Describe <b>this</b>', "long"]
    # nothing became an element, nothing ran, no image was even requested
    assert page.evaluate("window.__injected") == []
    assert page.evaluate("window.__imgErrors") == 0
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('#samples-panel *:not(option) b').length") == 0


def test_completions_newest_first_and_a_word_diff_between_two_steps(page: Any) -> None:
    choose_prompt(page, STORY)
    steps = page.eval_on_selector_all(
        "#samples-list .sample-step", "els => els.map(e => e.textContent)"
    )
    assert steps == ["step 15 \u00b7 0.25 s", "step 10 \u00b7 0.25 s", "step 5 \u00b7 0.25 s"]
    assert stats(page)["steps"] == [5, 10, 15]
    # the newest step against the previous one (the default)
    wait(page, "s => s.samples.shown.step === 15 && s.samples.shown.against === 10")
    diff = page.eval_on_selector_all(
        "#samples-view > *, #samples-view",
        "els => els.slice(1).map(e => [e.className, e.textContent])",
    )
    assert diff == [["del", "once"], ["ins", "twice"], ["ins", " there"]]
    assert text(page, "#samples-view") == "oncetwice upon a long time ago there"
    # the slider to step 10, against step 5 chosen by hand: the same words, others marked
    page.eval_on_selector(
        "#samples-step", "e => { e.value = '1'; e.dispatchEvent(new Event('input')); }"
    )
    wait(page, "s => s.samples.shown.step === 10 && s.samples.shown.against === 5")
    diff = page.eval_on_selector_all(
        "#samples-view > *", "els => els.map(e => [e.className, e.textContent])"
    )
    assert diff == [["ins", "long "], ["ins", " ago"]]
    page.select_option("#samples-compare", "2")  # event index 2: step 15
    wait(page, "s => s.samples.shown.step === 10 && s.samples.shown.against === 15")
    diff = page.eval_on_selector_all(
        "#samples-view > *", "els => els.map(e => [e.className, e.textContent])"
    )
    assert diff == [["del", "twice"], ["ins", "once"], ["del", " there"]]
    # a click on a row of the list picks that step
    page.click('#samples-list li[data-i="0"]')
    wait(page, "s => s.samples.shown.step === 5")
    assert page.eval_on_selector("#samples-step", "e => e.value") == "0"


def test_the_word_diff_gives_both_texts_back_and_stays_bounded(page: Any) -> None:
    got = page.evaluate(
        """async () => {
          const { diffWords, MAX_EDITS } = await import('/wordiff.js');
          let seed = 7;
          const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
          const words = ['a', 'b', 'cat', 'dog', ' ', '  ', '\\n', '\\t'];
          const text = () => Array.from({ length: Math.floor(rand() * 30) },
            () => words[Math.floor(rand() * words.length)]).join('');
          let wrong = 0;
          for (let t = 0; t < 2000; t += 1) {
            const a = text(), b = text();
            const ops = diffWords(a, b);
            const before = ops.filter((o) => o.op !== 'ins').map((o) => o.text).join('');
            const after = ops.filter((o) => o.op !== 'del').map((o) => o.text).join('');
            if (before !== a || after !== b) wrong += 1;
          }
          const far = diffWords('x '.repeat(4000), 'y '.repeat(4000));
          return { wrong, maxEdits: MAX_EDITS, far: far.map((o) => [o.op, o.text.length]) };
        }"""
    )
    assert got["wrong"] == 0
    # 8,000 changed tokens: past the edit bound, one removal and one insertion (the shared
    # last space aside), found without searching every edit path
    assert got["maxEdits"] == 1000
    assert got["far"] == [["del", 7999], ["ins", 7999], ["eq", 1]]


def test_a_cut_text_shows_the_mark_and_a_new_event_streams_in(
    page: Any, setup: tuple[LiveServer, RunWriter]
) -> None:
    choose_prompt(page, "long")
    wait(page, "s => s.samples.shown && s.samples.shown.completion.length === 8192")
    assert text(page, "#samples-view .cut") == " \u2702 cut: 8,192 of 20,000 bytes shown"
    assert len(page.query_selector_all("#samples-list .cut")) == 3
    _, run = setup
    run.log_samples(20, [{"prompt": STORY, "completion": "the end"}], took_s=0.5)
    wait(page, "s => s.samples.events === 4")
    choose_prompt(page, STORY)
    wait(page, "s => s.samples.shown.step === 20")
    first = page.eval_on_selector("#samples-list li", "e => e.textContent")
    assert first == "step 20 \u00b7 0.50 s" + "the end"
    assert stats(page)["fetches"] == 1  # streamed, not refetched


def test_after_the_daemon_restarts_the_panel_equals_a_fresh_load(
    page: Any, setup: tuple[LiveServer, RunWriter]
) -> None:
    server, run = setup
    server.restart()  # the page loses its socket and reconnects with backoff
    run.log_samples(30, [{"prompt": STORY, "completion": "written while reconnecting"}])
    wait(page, "s => s.conn === 'live' && s.snapshots >= 2", timeout=30_000)
    fresh = server.get_json("/api/runs/chat/samples?limit=300")
    n = fresh["count"]
    wait(page, f"s => s.samples.next === {n} && s.samples.events === {n}")
    panel = stats(page)
    assert panel["fetches"] == 2 and panel["generation"] == fresh["generation"]
    choose_prompt(page, STORY)
    assert stats(page)["steps"] == [
        e["step"] for e in fresh["events"] if any(i["prompt"] == STORY for i in e["items"])
    ]


def test_a_run_without_samples_is_not_asked_for_them_until_it_logs_some(
    browser: Any, tmp_path: Path
) -> None:
    run = RunWriter(tmp_path, name="plain")
    run.log(1, {"loss": 1.0})
    with run, LiveServer(tmp_path) as server:
        ctx = browser.new_context(viewport={"width": 1440, "height": 1400})
        pg = ctx.new_page()
        asked: list[str] = []
        pg.on("request", lambda r: "/api/runs/" in r.url and asked.append(r.url))
        pg.goto(server.url + "/")
        wait(
            pg, "s => s.focused === 'plain' && s.runs.length === 1 && s.samples.generation !== null"
        )
        assert "no samples logged for this run" in text(pg, "#samples-empty")
        run.log_samples(5, [{"prompt": STORY, "completion": "first words"}], took_s=0.1)
        wait(pg, "s => s.samples.events === 1")
        assert stats(pg)["fetches"] == 0  # streamed in, never fetched
        assert not [u for u in asked if "/samples" in u], asked
        ctx.close()
