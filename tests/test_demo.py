"""`mudpuppy-monitor demo` as `make demo` runs it: real trainers, the real server, a real browser.

The command itself runs for a bounded time on a free port; the page's run list must fill within
a minute and its loss chart must move while the fine-tunes train.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mudpuppy_callback import EVENTS_FILE, decode_line

from mudpuppy_monitor.demo import plan_runs
from mudpuppy_monitor.tinytrain import DEMO_PROMPTS
from tests.browser import launched, needs_chromium
from tests.conftest import find_free_port

pytest.importorskip("transformers")
pytest.importorskip("peft")


class Demo:
    """The demo command in a subprocess, its output collected, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, root: Path, *args: str) -> None:
        self.port = find_free_port()
        self.root = root
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mudpuppy_monitor",
                "demo",
                "--root",
                str(root),
                "--port",
                str(self.port),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}; output: {self.lines}")

    def interrupt(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)


def test_plan_gives_distinct_learning_rates_and_one_evaluating_run() -> None:
    runs = plan_runs(3, 400)
    assert [r.name for r in runs] == ["lora-lr3e-03", "lora-lr1e-03", "lora-lr3e-04"]
    assert len({r.lr for r in runs}) == 3
    assert [r.eval_every for r in runs] == [40, None, None]
    assert [r.sample_every for r in runs] == [20, 20, 20]


@needs_chromium
def test_demo_fills_the_run_list_and_moves_the_loss_chart(tmp_path: Path) -> None:
    root = tmp_path / "demo-runs"
    demo = Demo(root, "--runs", "2", "--steps", "400", "--step-delay", "0.1", "--gpu", "none")
    try:
        url = demo.wait_for_line(r"serving .* at (http://127\.0\.0\.1:\d+/)", 60).group(1)
        with launched() as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            # the run list fills within a minute
            page.wait_for_function(
                "() => window.__mudpuppy && window.__mudpuppy.stats().runs.length === 2",
                timeout=60_000,
            )
            assert page.evaluate("window.__mudpuppy.stats().runs") == [
                "lora-lr1e-03",
                "lora-lr3e-03",
            ]

            def loss_points() -> int:
                return page.evaluate(
                    "() => window.__mudpuppy.stats().charts.loss.series"
                    ".filter(s => s.key.endsWith('loss')).reduce((a, s) => a + s.n, 0)"
                )

            page.wait_for_function(
                "() => window.__mudpuppy.stats().charts.loss.series.some(s => s.n > 0)",
                timeout=60_000,
            )
            before = loss_points()
            draws = page.evaluate("window.__mudpuppy.stats().charts.loss.draws")
            # the chart moves: more points held and drawn, without a reload
            page.wait_for_function(
                f"""() => {{
                    const c = window.__mudpuppy.stats().charts.loss;
                    return c.series.reduce((a, s) => a + s.n, 0) > {before} + 5 && c.draws > {draws};
                }}""",
                timeout=60_000,
            )
            assert loss_points() > before
            # the focused run's samples panel fills as the trainer generates (every 20 steps)
            page.wait_for_function(
                "() => window.__mudpuppy.stats().samples.steps.length > 0", timeout=90_000
            )
            panel = page.evaluate("window.__mudpuppy.stats().samples")
            assert panel["prompts"] == list(DEMO_PROMPTS)
            assert (
                page.eval_on_selector("#samples-prompt-text", "e => e.textContent") in DEMO_PROMPTS
            )
            assert errors == []
    finally:
        code = demo.interrupt()
    assert code == 0, demo.lines
    # Ctrl-C stopped the trainers cleanly: each run ends with an `end` line
    for name in ("lora-lr3e-03", "lora-lr1e-03"):
        lines = (root / name / EVENTS_FILE).read_bytes().splitlines()
        last = decode_line(lines[-1])
        assert last["kind"] == "end", last
        assert last["status"] in ("interrupted", "completed")


def test_a_failing_trainer_is_reported_with_the_end_of_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mudpuppy_monitor.demo import DemoRun, report_failures

    run = DemoRun(name="broken", lr=1e-3, eval_every=None, save_every=None)
    with open(tmp_path / "broken.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; print('ImportError: no module named x'); sys.exit(3)",
            ],
            stdout=log,
        )
    report_failures([proc], [run], tmp_path)
    err = capsys.readouterr().err
    assert "demo: trainer broken exited with code 3" in err
    assert "ImportError: no module named x" in err


def test_sigterm_stops_the_demo_and_its_trainers(tmp_path: Path) -> None:
    root = tmp_path / "demo-runs"
    demo = Demo(root, "--runs", "1", "--steps", "5000", "--step-delay", "0.05", "--gpu", "none")
    try:
        demo.wait_for_line(r"serving .* at http://", 60)
        meta = root / "lora-lr3e-03" / "meta.json"
        deadline = time.monotonic() + 90
        while not meta.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = json.loads(meta.read_text())["pid"]
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(30) == 0
    finally:
        demo.interrupt()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the trainer did not outlive the demo
    last = decode_line((root / "lora-lr3e-03" / EVENTS_FILE).read_bytes().splitlines()[-1])
    assert (last["kind"], last["status"]) == ("end", "interrupted")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_sigkilled_demo_leaves_no_trainer_running(tmp_path: Path) -> None:
    # no chance to stop them: the parent-death signal must take the trainers along
    root = tmp_path / "demo-runs"
    demo = Demo(root, "--runs", "2", "--steps", "5000", "--step-delay", "0.05", "--gpu", "none")
    metas = [root / name / "meta.json" for name in ("lora-lr3e-03", "lora-lr1e-03")]
    try:
        demo.wait_for_line(r"serving .* at http://", 60)
        deadline = time.monotonic() + 120
        while not all(m.exists() for m in metas) and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = [json.loads(m.read_text())["pid"] for m in metas]
        demo.proc.kill()
        demo.proc.wait(10)
    finally:
        demo.interrupt()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
