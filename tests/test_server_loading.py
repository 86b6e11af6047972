"""The daemon answers while a large backlog loads: the run is listed as loading with its progress
over HTTP, in the WebSocket stream and on the dashboard; its points come when it has loaded, and a
run that ended long ago raises no alert then. A real uvicorn server, a real WebSocket client and
Chromium; the load is held at a gate so that each step is seen."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mudpuppy_monitor.core import Monitor, loading, prefetch
from tests.browser import launched, needs_chromium
from tests.serverutil import LiveServer, ProtocolClient, RunDir

T0 = 1_700_000_000.0
STEPS = 6000


def write_root(root: Path) -> int:
    """`big` (ended long ago, a few hundred kB) and `live` (small); the size of big's events."""
    big = RunDir(root, "big", max_steps=STEPS, start=False)
    big.append("start", t=T0)
    lines = [
        big.fmt.encode_line(
            {"v": 1, "seq": i, "t": T0 + i, "kind": "metrics", "step": i, "epoch": 0.0,
             "values": {"loss": 2.0 / i, "grad_norm": 1.0}}
        )
        for i in range(1, STEPS + 1)
    ]  # fmt: skip
    with open(big.events, "ab") as f:
        f.write(b"".join(lines))
    big.seq = STEPS + 1
    big.end("completed", step=STEPS, t=T0 + STEPS + 1)
    live = RunDir(root, "live", max_steps=100)
    for s in range(1, 6):
        live.metrics(s, loss=1.0 / s)
    return big.events.stat().st_size


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Backlogs of a few hundred kB load in the background, in the daemon's own thread (one
    core: no workers, so the bytes read are known at once); installs wait for the gate."""
    monkeypatch.setattr(loading, "LATER_MIN_BYTES", 100_000)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 1)
    opened = threading.Event()
    install = Monitor._install

    def gated(self: Monitor, *args: Any) -> None:
        opened.wait(60)
        install(self, *args)

    monkeypatch.setattr(Monitor, "_install", gated)
    yield opened
    opened.set()


def test_listed_at_once_then_streamed_when_loaded(tmp_path: Path, gate: threading.Event) -> None:
    size = write_root(tmp_path)
    with LiveServer(tmp_path) as server:
        runs = {r["id"]: r for r in server.get_json("/api/runs")["runs"]}
        assert set(runs) == {"big", "live"}
        big = runs["big"]
        assert big["status"] == "unknown" and big["step"] is None and big["name"] == "big"
        assert big["loading"]["total"] == size and 0 <= big["loading"]["bytes"] <= size
        assert runs["live"]["loading"] is None and runs["live"]["step"] == 5
        assert server.get_json("/api/runs/big")["summary"]["loading"] is not None
        series = server.get_json("/api/runs/big/series?names=loss")
        assert series["series"] == {} and series["generation"] == big["generation"]
        status, _, body = server.get("/api/runs/big/export?format=csv")
        assert status == 503 and "still loading" in json.loads(body)["error"]

        client = ProtocolClient(server)
        snapshot = client.connect()
        assert {r["id"]: r["loading"] is not None for r in snapshot["runs"]} == {
            "big": True,
            "live": False,
        }
        client.fetch("big")

        # the progress is streamed as the backlog is read (here: all of it, held at the gate);
        # the snapshot may hold it already
        def read_all(_: Any) -> bool:
            return (client.summaries["big"]["loading"] or {}).get("bytes") == size

        if not read_all(None):
            client.pump(read_all)
        gate.set()
        loaded = client.pump(
            lambda m: (
                m["type"] == "runs"
                and any(r["id"] == "big" and r["loading"] is None for r in m["runs"])
            )
        )
        summary = next(r for r in loaded["runs"] if r["id"] == "big")
        assert summary["status"] == "completed" and summary["step"] == STEPS
        assert summary["generation"] != big["generation"]
        # the client saw the new generation and refetched: every point is held
        assert client.held["big"]["loss"]["step"] == list(range(1, STEPS + 1))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # what else the change brings
            try:
                client.handle(json.loads(client.ws.recv(timeout=0.2)))
            except TimeoutError:
                pass
        # ended hours ago: loading it is not news
        assert not [m for m in client.messages if m["type"] == "alert" and m["run"] == "big"]
        status, _, body = server.get("/api/runs/big/export?format=csv")
        assert status == 200 and body.count(b"\nloss,") == STEPS
        client.close()


@needs_chromium
def test_dashboard_shows_loading_then_the_points(tmp_path: Path, gate: threading.Event) -> None:
    write_root(tmp_path)
    with LiveServer(tmp_path) as server, launched() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")

        def wait(predicate: str) -> None:
            page.wait_for_function(
                f"() => window.__mudpuppy && ({predicate})(window.__mudpuppy.stats())",
                timeout=20_000,
            )

        wait("s => s.conn === 'live' && s.overlaid.includes('big') && s.pending === 0")
        row = page.locator('#run-list li[data-id="big"]')
        page.wait_for_function(
            "() => /^loading \\d+ %$/.test(document.querySelector("
            "'#run-list li[data-id=\"big\"] .steps')?.textContent || '')"
        )
        assert "st-loading" in (row.locator(".light").get_attribute("class") or "")
        wait("s => /big loading \\d+ %/.test(s.loadingNote)")
        assert page.locator(".loading-note").is_visible()
        gate.set()
        wait("s => s.loadingNote === '' && s.charts.loss.lines >= 2")
        page.wait_for_function(
            "() => document.querySelector('#run-list li[data-id=\"big\"] .steps')"
            "?.textContent === '6,000 / 6,000'"
        )
        assert not page.locator(".loading-note").is_visible()
        assert "st-loading" not in (row.locator(".light").get_attribute("class") or "")
        assert errors == []
