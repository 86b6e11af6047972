"""The dashboard while things happen: a writer killed, a run completing, the daemon restarting;
and the screenshots of the full page (docs/screenshot.png, artifacts/)."""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import needs_chromium
from tests.conftest import FIXTURES
from tests.serverutil import REPO, LiveServer, RunDir
from tests.test_web_dashboard import Page

pytestmark = needs_chromium

# A training process of its own: meta.json with its pid, five steps, then it waits to be killed.
WRITER = r"""
import json, os, socket, sys, time
import mudpuppy_callback as f
run = sys.argv[1]
os.makedirs(run, exist_ok=True)
meta = {"format": f.FORMAT, "run_id": "doomed", "name": "doomed", "created": time.time(),
        "host": socket.gethostname(), "pid": os.getpid(), "ppid": os.getppid(), "argv": [],
        "config": {}, "versions": {}, "world_size": 1, "max_steps": 100, "gpus": []}
with open(os.path.join(run, "meta.json.tmp"), "w") as fh:
    json.dump(meta, fh)
os.replace(os.path.join(run, "meta.json.tmp"), os.path.join(run, "meta.json"))
with open(os.path.join(run, "events.jsonl"), "ab") as fh:
    fh.write(f.encode_line({"v": 1, "seq": 0, "t": time.time(), "kind": "start"}))
    for s in range(1, 6):
        fh.write(f.encode_line({"v": 1, "seq": s, "t": time.time(), "kind": "metrics", "step": s,
                                "epoch": 0.1 * s, "values": {"loss": 2.0 / s}}))
    fh.flush()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def root(tmp_path):
    run = RunDir(tmp_path, "steady", max_steps=100)
    for s in range(1, 21):
        run.metrics(s, loss=3.0 - s / 10)
    return tmp_path


def test_a_killed_writer_shows_the_crash_state(browser, root):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root / "doomed")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with LiveServer(root) as server:
            dash = Page(browser, server)
            dash.page.click('#run-list li[data-id="doomed"] .name')
            dash.wait("s => s.focused === 'doomed' && s.summary.status === 'running'")
            assert dash.stats()["banner"] == ""
            proc.kill()
            proc.wait(10)
            dash.wait("s => s.banner === 'crashed'")
            light = dash.page.get_attribute('#run-list li[data-id="doomed"] .light', "class")
            assert light == "light st-crashed"
            assert dash.page.text_content("#banner").startswith("CRASHED")
            assert f"pid {proc.pid}" in dash.page.text_content("#banner")
            dash.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_completion_shows_the_banner(browser, root):
    run = RunDir(root, "finishing", max_steps=5)
    for s, loss in enumerate([1.0, 0.8, 0.5, 0.6, 0.7], start=1):
        run.metrics(s, loss=loss)
    with LiveServer(root) as server:
        dash = Page(browser, server)
        dash.page.click('#run-list li[data-id="finishing"] .name')
        dash.wait("s => s.focused === 'finishing' && s.summary.step === 5")
        assert dash.stats()["banner"] == ""
        run.end("completed", step=5)
        dash.wait("s => s.banner === 'completed'")
        text = dash.page.text_content("#banner")
        assert text.startswith("COMPLETED")
        assert "5 steps" in text and "best loss 0.5" in text
        light = dash.page.get_attribute('#run-list li[data-id="finishing"] .light', "class")
        assert light == "light st-completed"
        dash.close()


def test_a_daemon_restart_reconnects_without_reload_and_without_duplicates(browser, root):
    run = RunDir(root, "survivor", max_steps=100)
    for s in range(1, 21):
        run.metrics(s, loss=1.0 + 1.0 / s)
    with LiveServer(root, gpu="none") as server:
        dash = Page(browser, server)
        dash.page.wait_for_function(
            "() => document.querySelector('#gpu-body').textContent.startsWith('no GPU detected: ')"
        )
        dash.page.click('#run-list li[data-id="survivor"] .name')
        dash.wait("s => s.focused === 'survivor'")
        dash.page.evaluate("window.__notReloaded = true")
        xs = "window.__mudpuppy.xs('survivor', 'loss')"
        assert dash.page.evaluate(xs) == list(range(1, 21))

        server.stop()
        dash.wait("s => s.conn === 'reconnecting' || s.conn === 'disconnected'")
        assert dash.page.text_content("#conn").startswith(("RECONNECTING IN", "DISCONNECTED"))
        for s in range(21, 26):  # written while the daemon is down
            run.metrics(s, loss=1.0 + 1.0 / s)
        server.start()
        dash.wait("s => s.conn === 'live' && s.snapshots === 2", timeout=20_000)
        dash.page.wait_for_function(f"() => {xs}.length === 25")
        for s in range(26, 29):  # and streamed after the reconnect
            run.metrics(s, loss=1.0 + 1.0 / s)
        dash.page.wait_for_function(f"() => {xs}.length >= 28")
        dash.page.wait_for_timeout(300)
        assert dash.page.evaluate(xs) == list(range(1, 29))
        assert dash.page.evaluate("window.__notReloaded") is True
        assert dash.page.text_content("#conn") == "LIVE"
        dash.close()


def write_showcase(root: Path) -> None:
    """Three LoRA runs with the usual shapes (warmup + cosine lr, noisy decaying loss, eval,
    checkpoints, memory, tokens), one with a NaN, one completed; plus the HF and LLaMA-Factory
    fixtures."""
    import shutil

    (root / "hf-qwen0.5b-full").mkdir()
    shutil.copy(
        FIXTURES / "trainer_state" / "causal_lm_full_ft_with_eval_loss.json",
        root / "hf-qwen0.5b-full" / "trainer_state.json",
    )
    (root / "llamafactory-qwen7b-medical").mkdir()
    shutil.copy(
        FIXTURES / "llamafactory" / "qwen_medical_lr_with_eval.jsonl",
        root / "llamafactory-qwen7b-medical" / "trainer_log.jsonl",
    )
    now = time.time()
    layers = [f"model.layers.{i}.self_attn.{p}" for i in range(8) for p in ("q_proj", "v_proj")]
    for k, (name, lr, steps) in enumerate(
        [
            ("sweep/lora-r16-lr2e-4", 2e-4, 420),
            ("sweep/lora-r8-lr1e-4", 1e-4, 380),
            ("sweep/lora-r8-lr5e-4", 5e-4, 300),
        ]
    ):
        rnd = random.Random(k)
        t0 = now - steps * 1.5
        run = RunDir(root, name, max_steps=600, start=False)
        run.append("start", t=t0)
        for s in range(1, steps + 1):
            t = t0 + 1.5 * s
            warm = min(1.0, s / 30)
            cur_lr = lr * warm * 0.5 * (1 + math.cos(math.pi * s / 600))
            loss = 0.9 + 1.8 * math.exp(-s / (70 + 25 * k)) + rnd.gauss(0, 0.05)
            if k == 2 and s == 240:
                loss = math.nan
            values = {
                "loss": loss,
                "learning_rate": cur_lr,
                "grad_norm": 0.6 + 1.5 * math.exp(-s / 50) + abs(rnd.gauss(0, 0.1)),
                "mem_allocated": (5.2 + 0.3 * k) * 2**30 + rnd.gauss(0, 2e7),
                "mem_peak": (7.1 + 0.3 * k) * 2**30,
                "tokens_seen": 2048.0 * s,
            }
            run.metrics(s, t=t, **values)
            if s % 100 == 0:
                run.append(
                    "eval",
                    t=t,
                    step=s,
                    values={"eval_loss": 0.95 + 1.6 * math.exp(-s / (70 + 25 * k))},
                )
                run.append("checkpoint", t=t, step=s, path=f"checkpoint-{s}")
            if s % 20 == 0:
                norms = {
                    n: {
                        "A": 8.0 + 0.002 * s * (i % 5),
                        "B": 0.0 if i == 13 else 0.02 * s * (1 + i % 4) / 100,
                        "update": 0.0 if i == 13 else 0.0004 * s * (1 + i % 4) / 10,
                    }
                    for i, n in enumerate(layers)
                }
                run.append("lora", t=t, step=s, layers=norms)
        if k == 1:
            run.end("completed", step=steps)


@pytest.mark.parametrize(
    ("width", "height", "target"),
    [
        (1440, 900, REPO / "artifacts" / "dashboard-1440x900.png"),
        (390, 844, REPO / "artifacts" / "dashboard-390x844.png"),
    ],
)
def test_screenshots_of_the_full_page(browser, tmp_path, width, height, target):
    write_showcase(tmp_path)
    with LiveServer(tmp_path, gpu="fake") as server:
        dash = Page(browser, server, width=width, height=height)
        # the LLaMA-Factory excerpt runs to step 3,240: leave it in the list, off the charts
        dash.page.uncheck('#run-list li[data-id="llamafactory-qwen7b-medical"] input')
        dash.page.click('#run-list li[data-id="sweep/lora-r16-lr2e-4"] .name')
        dash.wait(
            "s => s.focused === 'sweep/lora-r16-lr2e-4' && s.lora.layers === 16 && s.gpu.devices > 0"
        )
        dash.page.wait_for_timeout(1200)  # a few GPU samples for the history lines
        target.parent.mkdir(exist_ok=True)
        dash.page.screenshot(path=str(target), full_page=True)
        assert dash.errors == []
        dash.close()
    assert target.stat().st_size > 50_000
    with open(target, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == width
    if width == 1440 and os.environ.get("MUDPUPPY_UPDATE_SCREENSHOT") == "1":
        # `make screenshot` refreshes the README's picture; plain test runs leave the tree clean
        shutil.copyfile(target, REPO / "docs" / "screenshot.png")
