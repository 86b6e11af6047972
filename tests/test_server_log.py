"""A run's output over HTTP (`/log?tail=N`) and the WebSocket (`log` messages to a client that
opened it), and resumed runs as a client sees them, against a real server and a real client."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from mudpuppy_monitor.launch.output import LineSplitter, OutputLog
from tests.serverutil import LiveServer, ProtocolClient, RunDir, ws_connect


def write_output(run: RunDir, text: str, log: OutputLog | None = None) -> OutputLog:
    """Through the launcher's own writer, as `mudpuppy-monitor run` tees a job's output."""
    log = log or OutputLog(run.path)
    log.write(LineSplitter().feed(text.encode(), 0.0))
    return log


def test_the_tail_is_the_last_n_lines_and_bounded(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "job")
    RunDir(tmp_path, "quiet")  # no output.log
    write_output(run, "".join(f"\x1b[32mline {i}\x1b[0m\n" for i in range(10_000))).close()
    with LiveServer(tmp_path) as server:
        got = server.get_json("/api/runs/job/log?tail=3")
        assert got["lines"] == [f"\x1b[32mline {i}\x1b[0m" for i in (9997, 9998, 9999)]
        assert (got["start"], got["end"], got["run"]) == (9997, 10_000, "job")
        assert got["generation"] == server.get_json("/api/runs/job")["generation"]
        most = server.get_json("/api/runs/job/log?tail=999999")
        assert len(most["lines"]) == 1000 and most["start"] == 9000  # clamped to what is held
        assert len(server.get_json("/api/runs/job/log")["lines"]) == 200  # the default
        assert server.get_json("/api/runs/job/log?tail=0")["lines"] == []
        quiet = server.get_json("/api/runs/quiet/log")
        assert (quiet["lines"], quiet["end"]) == ([], 0)
        status, _, body = server.get("/api/runs/job/log?tail=ten")
        assert (status, json.loads(body)) == (400, {"error": "tail must be an integer"})
        assert server.get("/api/runs/nope/log")[0] == 404
        assert server.get("/api/runs/..%2Fjob/log")[0] == 404
        detail = server.get_json("/api/runs/job")
        assert detail["log"] == {"first": 9000, "end": 10_000}


def test_lines_stream_only_to_a_client_that_opened_the_log(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "job")
    log = write_output(run, "before\n")
    with LiveServer(tmp_path) as server:
        watcher = ProtocolClient(server, logs=["job"])
        watcher.connect()
        other = ProtocolClient(server)
        other.connect()
        assert watcher.logs["job"]["lines"] == ["before"]
        write_output(run, "one\n<script>alert(1)</script>\n", log)
        watcher.pump(lambda m: m["type"] == "log")
        write_output(run, "three\n", log)
        run.metrics(1, loss=1.0)  # a change of another kind: no lines, no log message
        watcher.pump(lambda m: watcher.logs["job"]["end"] == 4)
        assert watcher.logs["job"]["lines"] == [
            "before",
            "one",
            "<script>alert(1)</script>",
            "three",
        ]
        assert watcher.fetches == 1  # no gap, no refetch
        first = next(m for m in watcher.messages if m["type"] == "log")
        assert (first["run"], first["i0"], first["lines"][0]) == ("job", 1, "one")
        # the client that did not open it got the summaries and points, never a line
        other.pump(lambda m: m["type"] == "points")
        time.sleep(0.5)
        while True:  # what else is queued for it
            try:
                other.handle(json.loads(other.ws.recv(timeout=0.2)))
            except TimeoutError:
                break
        assert not [m for m in other.messages if m["type"] == "log"]
        # after a reconnect the picture equals a fresh load
        watcher.close()
        write_output(run, "while away\n", log)
        watcher.connect()
        if watcher.logs["job"]["end"] < 5:  # fetched before the server read the new line
            watcher.pump(lambda m: watcher.logs["job"]["end"] == 5)
        fresh = server.get_json("/api/runs/job/log?tail=1000")
        assert watcher.logs["job"]["lines"] == fresh["lines"][-5:] == [
            "before", "one", "<script>alert(1)</script>", "three", "while away"
        ]  # fmt: skip
        watcher.close()
        other.close()


def test_closing_the_log_stops_its_lines(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "job")
    log = write_output(run, "a\n")
    with LiveServer(tmp_path) as server:
        ws = ws_connect(server)
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        ws.send(json.dumps({"type": "logs", "runs": ["job"]}))
        time.sleep(0.3)  # the server reads client messages on its own task
        write_output(run, "b\n", log)
        got = _next_of(ws, "log")
        assert got["lines"] == ["b"]
        ws.send(json.dumps({"type": "logs", "runs": []}))
        time.sleep(0.3)
        write_output(run, "c\n", log)
        run.metrics(1, loss=1.0)
        assert _next_of(ws, "points")["run"] == "job"  # the change went by without a line
        ws.close()


def _next_of(ws, kind: str, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if msg["type"] == kind:
            return msg
        assert msg["type"] != "log", msg


def test_a_resumed_attempt_gives_one_curve_to_a_streaming_client(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "job")
    for step in range(1, 15):
        run.metrics(step, loss=10.0 - step * 0.1)
    run.end("crashed", step=14, error="killed by SIGKILL")
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server, subscribe=["job"])
        client.connect()
        client.fetch("job")
        assert client.held["job"]["loss"]["step"] == list(range(1, 15))
        generation = client.generation["job"]
        run.append("start", run_id="job", resumed_from=10)
        for step in range(11, 21):
            run.metrics(step, loss=5.0 - step * 0.1)
        client.pump_until_held("job", "loss", list(range(1, 21)))
        assert client.generation["job"] != generation
        assert client.held["job"]["loss"]["y"][10:] == [5.0 - s * 0.1 for s in range(11, 21)]
        api = server.get_json("/api/runs/job/series?names=loss")["series"]["loss"]
        assert api["x"] == list(range(1, 21)) and api["count"] == 20
        markers = [m["kind"] for m in server.get_json("/api/runs/job")["markers"]]
        assert markers.count("restart") == 1 and "end" not in markers
        # the export hides attempt one's steps 11-14 unless asked for them
        _, _, body = server.get("/api/runs/job/export?format=csv")
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert [int(r[1]) for r in rows[1:] if r[0] == "loss"] == list(range(1, 21))
        _, _, body = server.get("/api/runs/job/export?format=csv&superseded=mark")
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert [(int(r[1]), r[4]) for r in rows[1:] if r[0] == "loss" and r[4] == "1"] == [
            (s, "1") for s in range(11, 15)
        ]
        status, _, body = server.get("/api/runs/job/export?superseded=all")
        assert (status, json.loads(body)) == (400, {"error": "superseded must be hide or mark"})
        client.close()
