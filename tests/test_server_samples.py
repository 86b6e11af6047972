"""Generated samples over HTTP and the WebSocket: a real uvicorn server, runs written by the real
writer (RunWriter), a real WebSocket client."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from mudpuppy_callback import RunWriter, encode_line

from tests.conftest import FIXTURES
from tests.serverutil import LiveServer, ProtocolClient, RunDir

XSS = "<img src=x onerror=alert(1)>"


def items(step: int) -> list[dict[str, Any]]:
    return [
        {"prompt": "2+2=", "completion": f" {step % 7}"},
        {"prompt": XSS, "completion": XSS + " " * step, "score": math.nan},
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runs")
    with RunWriter(root, name="sweep/a") as run:
        for step in range(1, 31):
            run.log(step, {"loss": 1.0 / step})
            if step % 5 == 0:
                run.log_samples(step, items(step), took_s=0.5)
        run.log_samples(31, [{"prompt": "long", "completion": "é" * 10_000}])
    with RunWriter(root, name="plain") as run:
        run.log(1, {"loss": 1.0})
    hf = root / "hf-out"
    hf.mkdir()
    shutil.copy(FIXTURES / "trainer_state" / "causal_lm_full_ft_with_eval_loss.json",
                hf / "trainer_state.json")  # fmt: skip
    with LiveServer(root) as srv:
        yield srv


def test_samples_of_a_run_newest_last_with_count_and_total(server: LiveServer) -> None:
    got = server.get_json("/api/runs/sweep/a/samples")
    assert got["run"] == "sweep/a"
    assert (got["count"], got["total"]) == (7, 7)
    assert [e["step"] for e in got["events"]] == [5, 10, 15, 20, 25, 30, 31]
    assert [e["i"] for e in got["events"]] == list(range(7))
    first = got["events"][0]
    assert first["took_s"] == 0.5 and first["n"] == 2
    assert first["items"][1] == {"prompt": XSS, "completion": XSS + " " * 5, "score": "NaN"}
    last = got["events"][-1]
    assert last["took_s"] is None
    assert last["items"][0]["truncated"] == {"completion": 20_000}
    assert len(last["items"][0]["completion"].encode()) == 8192
    assert got["generation"] == server.get_json("/api/runs/sweep/a")["generation"]


def test_a_step_range_and_a_limit(server: LiveServer) -> None:
    got = server.get_json("/api/runs/sweep/a/samples?from=10&to=25&limit=2")
    assert (got["count"], got["total"]) == (7, 4)
    assert [e["step"] for e in got["events"]] == [20, 25]
    # limit is clamped to 1..1000, an empty value is the default
    assert len(server.get_json("/api/runs/sweep/a/samples?limit=0")["events"]) == 1
    assert len(server.get_json("/api/runs/sweep/a/samples?limit=99999")["events"]) == 7
    assert len(server.get_json("/api/runs/sweep/a/samples?from=&limit=")["events"]) == 7


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=abc", "from must be a number"),
        ("to=NaN", "to must be finite"),
        ("limit=many", "limit must be an integer"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    server: LiveServer, query: str, message: str
) -> None:
    status, _, body = server.get(f"/api/runs/sweep/a/samples?{query}")
    assert status == 400 and json.loads(body) == {"error": message}


def test_unknown_runs_and_traversal_are_404(server: LiveServer) -> None:
    for path in ("/api/runs/nope/samples", "/api/runs/../sweep/a/samples?from=x",
                 "/api/runs/sweep/%2e%2e/a/samples"):  # fmt: skip
        status, _, body = server.get(path)
        assert status == 404, path


def test_runs_without_samples_answer_empty(server: LiveServer) -> None:
    for run in ("plain", "hf-out"):
        got = server.get_json(f"/api/runs/{run}/samples")
        assert (got["count"], got["total"], got["events"]) == (0, 0, [])
        assert server.get_json(f"/api/runs/{run}")["samples"] == 0
    # the summaries count them too: the dashboard asks for none of a run whose count is 0
    counts = {r["id"]: r["samples"] for r in server.get_json("/api/runs")["runs"]}
    assert counts == {"sweep/a": 7, "plain": 0, "hf-out": 0}


def fetch_samples(client: ProtocolClient, run: str) -> dict[str, Any]:
    return client.server.get_json(f"/api/runs/{run}/samples?limit=1000")


class SamplesHeld:
    """What the dashboard's samples panel does (docs/protocol.md): fetch, then apply `samples`
    messages by index; a gap or another generation means fetch again."""

    def __init__(self, client: ProtocolClient, run: str) -> None:
        self.client = client
        self.run = run
        self.fetches = 0
        self.events: list[dict[str, Any]] = []
        self.generation: int | None = None
        self.fetch()

    def fetch(self) -> None:
        got = fetch_samples(self.client, self.run)
        self.fetches += 1
        self.events, self.generation = got["events"], got["generation"]

    def apply(self, msg: dict[str, Any]) -> None:  # returns None: usable inside `or`
        if msg.get("type") != "samples" or msg["run"] != self.run:
            return
        if msg["generation"] != self.generation or msg["i0"] > len(self.events):
            self.fetch()
            return
        self.events.extend(msg["events"][len(self.events) - msg["i0"] :])


def test_a_new_samples_event_is_streamed_to_a_client_of_the_run(tmp_path: Path) -> None:
    run = RunWriter(tmp_path, name="live")
    run.log(1, {"loss": 1.0})
    run.log_samples(1, items(1), took_s=0.1)
    other = RunDir(tmp_path, "other")
    with run, LiveServer(tmp_path) as server:
        watcher = ProtocolClient(server, subscribe=["live"])
        bystander = ProtocolClient(server, subscribe=["other"])
        watcher.connect()
        bystander.connect()
        held = SamplesHeld(watcher, "live")
        assert [e["step"] for e in held.events] == [1]

        run.log(2, {"loss": 0.5})
        run.log_samples(2, [{"prompt": XSS, "completion": "<script>x</script>"}], took_s=0.2)
        msg = watcher.pump(lambda m: m["type"] == "samples", timeout=10)
        assert msg["run"] == "live" and (msg["i0"], msg["count"]) == (1, 2)
        (event,) = msg["events"]
        assert (event["i"], event["step"], event["took_s"], event["n"]) == (1, 2, 0.2, 1)
        assert event["items"] == [{"prompt": XSS, "completion": "<script>x</script>"}]
        held.apply(msg)
        assert held.events == fetch_samples(watcher, "live")["events"]  # = a fresh load
        assert held.fetches == 1
        # a client that did not open the run gets its summary but not its samples
        other.metrics(1, loss=1.0)
        bystander.pump(lambda m: m["type"] == "points" and m["run"] == "other", timeout=10)
        assert not [m for m in bystander.messages if m["type"] == "samples"]
        watcher.close()
        bystander.close()


def test_after_a_restart_the_client_holds_what_a_fresh_load_holds(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="r") as run:
        run.log_samples(1, items(1))
        server = LiveServer(tmp_path)
        server.start()
        try:
            client = ProtocolClient(server, subscribe=["r"])
            client.connect()
            held = SamplesHeld(client, "r")
            server.restart()  # the client misses what is written while the daemon is down
            run.log_samples(2, items(2))
            run.log_samples(3, items(3))
            client.close()
            client.connect()  # reconnect: a new snapshot, refetch what is shown
            held.fetch()
            run.log_samples(4, items(4))
            # every message goes through the client's rule, in order, until step 4 is held
            client.pump(lambda m: held.apply(m) or len(held.events) == 4, timeout=10)
            fresh = fetch_samples(client, "r")
            assert [e["step"] for e in held.events] == [1, 2, 3, 4]
            assert held.events == fresh["events"]
            client.close()
        finally:
            server.stop()


def test_a_burst_is_announced_and_fetched_not_streamed(tmp_path: Path) -> None:
    run = RunWriter(tmp_path, name="r")
    run.log_samples(1, items(1))
    with run, LiveServer(tmp_path) as server:
        client = ProtocolClient(server, subscribe=["r"])
        client.connect()
        held = SamplesHeld(client, "r")
        # 40 events land at once, as when a run is copied in
        head = {"v": 1, "t": time.time(), "kind": "samples"}
        lines = b"".join(
            encode_line({**head, "seq": 100 + k, "step": 10 + k, "items": items(k)[:1]})
            for k in range(40)
        )
        with open(Path(run.dir) / "events.jsonl", "ab") as f:
            f.write(lines)
        msg = client.pump(lambda m: m["type"] == "samples", timeout=10)
        assert (msg["i0"], msg["count"], msg["events"]) == (41, 41, [])
        held.apply(msg)
        assert held.fetches == 2 and len(held.events) == 41
        client.close()
