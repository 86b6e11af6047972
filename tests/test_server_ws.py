"""The WebSocket stream against a real uvicorn server and a real client (websockets)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.serverutil import (
    REPO,
    LiveServer,
    ProtocolClient,
    RunDir,
    flood_until_dropped,
    stalled_websocket,
    ws_connect,
)


def append_from_another_process(run_dir, first_seq: int, steps: list[int]) -> None:
    """A separate process appends metrics lines, as a trainer would."""
    code = textwrap.dedent(
        f"""
        import os, sys, time
        import mudpuppy_callback as fmt
        fd = os.open({str(run_dir / "events.jsonl")!r}, os.O_WRONLY | os.O_APPEND)
        for i, step in enumerate({steps!r}):
            line = fmt.encode_line({{"v": 1, "seq": {first_seq} + i, "t": time.time(),
                "kind": "metrics", "step": step, "epoch": 0.0, "values": {{"loss": 10.0 / step}}}})
            os.write(fd, line)
        os.close(fd)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "callback"), str(REPO)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_snapshot_then_live_points_appended_by_another_process(tmp_path):
    run = RunDir(tmp_path, "a")
    for step in (1, 2, 3):
        run.metrics(step, loss=10.0 / step)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        snapshot = client.connect()
        assert snapshot["protocol"] == 1
        assert [r["id"] for r in snapshot["runs"]] == ["a"]
        assert snapshot["runs"][0]["step"] == 3
        assert snapshot["gpus"]["backend"] == "none" and snapshot["gpus"]["devices"] == []
        client.fetch("a")
        assert client.held["a"]["loss"]["step"] == [1, 2, 3]

        append_from_another_process(run.path, run.seq, [4, 5, 6, 7, 8])
        client.pump_until_held("a", "loss", [1, 2, 3, 4, 5, 6, 7, 8])
        assert client.held["a"]["loss"]["y"] == [10.0 / s for s in range(1, 9)]
        points = [m for m in client.messages if m["type"] == "points"]
        assert points[0]["series"]["loss"]["i0"] == 3
        assert client.fetches == 1  # no gap: the stream continued where the fetch ended
        # summaries of a batch come before its points: the last one is here already
        assert client.summaries["a"]["step"] == 8
        assert client.summaries["a"]["loss"] == 10.0 / 8
        client.close()


def test_a_run_created_while_connected_appears_with_its_points(tmp_path):
    RunDir(tmp_path, "old").metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        new = RunDir(tmp_path, "sweep/new")
        new.metrics(1, loss=0.5)
        new.metrics(2, loss=0.25)
        streamed: dict[int, float] = {}

        def got_both(msg):
            if msg["type"] == "points" and msg["run"] == "sweep/new":
                cols = msg["series"]["loss"]
                for k, (s, y) in enumerate(zip(cols["step"], cols["y"], strict=True)):
                    assert cols["i0"] + k == len(streamed)  # in order, from index 0
                    streamed[s] = y
            return len(streamed) == 2

        client.pump(got_both)
        assert streamed == {1: 0.5, 2: 0.25}
        assert "sweep/new" in client.summaries
        client.close()


def test_subscription_limits_the_points_sent(tmp_path):
    a, b = RunDir(tmp_path, "a"), RunDir(tmp_path, "b")
    a.metrics(1, loss=1.0)
    b.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server, subscribe=["a"])
        client.connect()
        time.sleep(0.3)  # the subscription has no reply; give the reader a moment
        b.metrics(2, loss=2.0)
        client.pump(lambda m: m["type"] == "runs" and client.summaries["b"]["step"] == 2)
        # a later change of a: everything published with b's summary has arrived before it
        a.metrics(2, loss=2.0)
        client.pump(lambda m: m["type"] == "points" and m["run"] == "a")
        assert [m for m in client.messages if m["type"] == "points" and m["run"] == "b"] == []

        client.ws.send(json.dumps({"type": "subscribe", "runs": None}))
        time.sleep(0.3)
        b.metrics(3, loss=3.0)
        msg = client.pump(lambda m: m["type"] == "points" and m["run"] == "b")
        assert msg["series"]["loss"]["step"] == [3]
        assert msg["series"]["loss"]["i0"] == 2
        client.close()


def test_reconnect_after_a_server_restart_has_no_gap_and_no_duplicate(tmp_path):
    run = RunDir(tmp_path, "r")
    for step in range(1, 51):
        run.metrics(step, loss=1.0 / step, grad_norm=float(step))
    server = LiveServer(tmp_path)
    server.start()
    try:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("r")
        for step in range(51, 71):
            run.metrics(step, loss=1.0 / step, grad_norm=float(step))
        client.pump_until_held("r", "loss", list(range(1, 71)))
        client.pump_until_held("r", "grad_norm", list(range(1, 71)))

        server.stop()  # the client sees its connection close
        with pytest.raises(Exception):  # noqa: B017 - the closed connection, whatever its code
            client.ws.recv(timeout=5)
        client.ws = None
        for step in range(71, 101):  # written while no daemon runs
            run.metrics(step, loss=1.0 / step, grad_norm=float(step))
        server.start()
        client.connect()
        for step in range(101, 121):
            run.metrics(step, loss=1.0 / step, grad_norm=float(step))
        client.pump_until_held("r", "loss", list(range(1, 121)))
        client.pump_until_held("r", "grad_norm", list(range(1, 121)))

        fresh = server.get_json("/api/runs/r/series?points=100000")["series"]
        for name in ("loss", "grad_norm"):
            assert client.held["r"][name]["step"] == fresh[name]["x"]
            assert client.held["r"][name]["y"] == fresh[name]["y"]
        client.close()
    finally:
        server.stop()


def test_a_client_that_never_reads_does_not_delay_another(tmp_path):
    rng = random.Random(5)
    run = RunDir(tmp_path, "big")
    with LiveServer(tmp_path, client_queue=8, send_timeout_s=5.0) as server:
        stalled = stalled_websocket(server.port)
        healthy = ProtocolClient(server)
        healthy.connect()
        healthy.fetch("big")
        hub = server.ctx.hub
        steps: list[int] = []
        after_stall = 0
        step = 0
        # write until the stalled client's buffers and queue are full (it is resynced or
        # dropped), then a few bursts more: the healthy client must get every point throughout
        while after_stall < 5:
            assert step < 20_000, "the stalled client never fell behind"
            for _ in range(10):
                step += 1
                steps.append(step)
                # random values: incompressible, they fill the stalled socket's buffers
                run.metrics(step, loss=rng.random(), **{f"v{j}": rng.random() for j in range(200)})
            healthy.pump_until_held("big", "loss", steps, timeout=20)
            if hub.stats.resyncs + hub.stats.disconnects >= 1:
                after_stall += 1
        assert healthy.fetches == 1  # the healthy client never lost a point
        fresh = server.get_json("/api/runs/big/series?names=loss,v149&points=100000")["series"]
        assert healthy.held["big"]["loss"]["y"] == fresh["loss"]["y"]
        assert healthy.held["big"]["v149"]["y"] == fresh["v149"]["y"]
        healthy.close()
        stalled.close()


def test_news_follows_the_notification_rules_once_per_burst_and_never_for_history(tmp_path):
    """`news` (what raises the dashboard's desktop notifications) is decided by the same rules
    and default limits as the webhooks: a burst of NaN steps is one piece of news, a run that
    ended before the daemon started is none, a run's end is one."""
    done = RunDir(tmp_path, "done")
    done.metrics(1, loss=math.nan)  # history: ended before the daemon started
    done.end("failed", step=1, error="boom")
    run = RunDir(tmp_path, "x")
    run.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        for step in range(2, 502):  # 500 NaN steps
            run.metrics(step, loss=math.nan, grad_norm=math.inf)
        run.end("completed", step=501)
        client.pump(lambda m: m["type"] == "news" and m["rule"] == "completed", timeout=20)
        with pytest.raises(TimeoutError):  # the news is read every 0.5 s: nothing more follows
            client.pump(lambda m: m["type"] == "news", timeout=1.5)
        news = [(m["run"], m["rule"], m["step"]) for m in client.messages if m["type"] == "news"]
        assert news == [("x", "nonfinite", 2), ("x", "completed", 501)]
        first = next(m for m in client.messages if m["type"] == "news")
        assert first["message"].startswith("loss is NaN") and "grad_norm" in first["message"]
        alerts = [m for m in client.messages if m["type"] == "alert" and m["run"] == "x"]
        assert len(alerts) >= 2  # the toasts' stream still tells every streak and the end
        client.close()


def test_alerts_for_nonfinite_values_and_completion(tmp_path):
    run = RunDir(tmp_path, "x")
    run.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        run.metrics(2, loss=math.nan)
        alert = client.pump(lambda m: m["type"] == "alert")
        assert (alert["run"], alert["kind"], alert["step"]) == ("x", "nonfinite", 2)
        assert alert["message"]
        run.end("completed", step=2)
        alert = client.pump(lambda m: m["type"] == "alert")
        assert (alert["run"], alert["kind"], alert["step"]) == ("x", "completed", 2)
        client.close()


def test_a_removed_run_is_announced(tmp_path):
    RunDir(tmp_path, "keep").metrics(1, loss=1.0)
    gone = RunDir(tmp_path, "gone")
    gone.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        shutil.rmtree(gone.path)
        msg = client.pump(lambda m: m["type"] == "run_removed")
        assert msg == {"type": "run_removed", "id": "gone"}
        client.close()


def test_garbage_from_a_client_is_ignored(tmp_path):
    run = RunDir(tmp_path, "a")
    run.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("a")
        for junk in ("not json", "[1,2]", '{"type": "subscribe", "runs": 5}', '{"type": "nope"}'):
            client.ws.send(junk)
        client.ws.send(b"\xff\xfe binary")
        run.metrics(2, loss=2.0)
        client.pump_until_held("a", "loss", [1, 2])
        client.close()


def test_shutdown_with_connected_clients_is_prompt(tmp_path):
    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    server = LiveServer(tmp_path)
    server.start()
    ws = ws_connect(server)
    stalled = stalled_websocket(server.port)
    assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 8.0
    stalled.close()
    ws.close()


def test_lora_snapshots_and_loss_spikes_are_streamed(tmp_path):
    run = RunDir(tmp_path, "l")
    for step in range(1, 71):
        run.metrics(step, loss=1.0)
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        run.lora(70, {"model.layers.0.mlp.down_proj": {"A": 2.5, "B": 0.125}})
        msg = client.pump(lambda m: m["type"] == "lora")
        assert msg["run"] == "l" and msg["step"] == 70
        assert msg["layers"]["model.layers.0.mlp.down_proj"]["A"] == 2.5
        assert msg["layers"]["model.layers.0.mlp.down_proj"]["B"] == 0.125
        run.metrics(71, loss=5.0)  # far above the median of the 64 before it
        alert = client.pump(lambda m: m["type"] == "alert")
        assert (alert["run"], alert["kind"], alert["step"]) == ("l", "spike", 71)
        client.close()


def test_gpu_samples_are_pushed(tmp_path):
    with LiveServer(tmp_path, gpu="fake", gpu_interval_s=0.1) as server:
        client = ProtocolClient(server)
        snapshot = client.connect()
        assert snapshot["gpus"]["backend"] == "fake" and snapshot["gpus"]["simulated"] is True
        first = client.pump(lambda m: m["type"] == "gpus")
        second = client.pump(lambda m: m["type"] == "gpus")
        assert [d["index"] for d in second["devices"]] == [0, 1]
        assert second["t"] > first["t"]
        assert set(second["attribution"]) == {"0", "1"}
        assert all(d["simulated"] is True for d in second["devices"])
        client.close()


def test_a_slow_reader_is_resynced_with_a_fresh_snapshot(tmp_path):
    rng = random.Random(7)
    run = RunDir(tmp_path, "s")
    with LiveServer(tmp_path, client_queue=4, max_resyncs=1000) as server:
        # max_queue=1: the client library stops reading the socket while we do not recv;
        # a small receive buffer makes the kernel push back soon
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        # (close_timeout: its paused reader would not see the server's close frame)
        slow = ws_connect(server, max_queue=1, sock=sock, close_timeout=0.5)
        assert json.loads(slow.recv(timeout=5))["type"] == "snapshot"
        hub = server.ctx.hub
        step = 0
        while hub.stats.resyncs == 0:
            assert step < 20_000, "the slow client never fell behind"
            for _ in range(10):
                step += 1
                run.metrics(step, loss=rng.random(), **{f"v{j}": rng.random() for j in range(200)})
            time.sleep(0.02)
        kinds = []
        while "resync" not in kinds:
            kinds.append(json.loads(slow.recv(timeout=10))["type"])
        assert json.loads(slow.recv(timeout=10))["type"] == "snapshot"
        slow.close()


def test_a_truncated_run_streams_its_new_generation(tmp_path):
    run = RunDir(tmp_path, "t")
    for step in range(1, 11):
        run.metrics(step, loss=float(step))
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("t")
        old_generation = client.generation["t"]
        # the file is replaced by a new one (a run restarted into the same directory)
        tmp = run.path / "events.jsonl.new"
        run.events.rename(tmp)
        run.seq = 0
        run.append("start")
        for step in range(1, 4):
            run.metrics(step, loss=100.0 + step)
        tmp.unlink()
        client.pump_until_held("t", "loss", [1, 2, 3])
        assert client.held["t"]["loss"]["y"] == [101.0, 102.0, 103.0]
        assert client.generation["t"] != old_generation
        client.close()


def test_poll_mode_streams_appends_too(tmp_path):
    run = RunDir(tmp_path, "p")
    run.metrics(1, loss=1.0)
    with LiveServer(tmp_path, poll=True) as server:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("p")
        run.metrics(2, loss=0.5)
        client.pump_until_held("p", "loss", [1, 2])
        assert client.held["p"]["loss"]["y"] == [1.0, 0.5]
        client.close()


def test_a_burst_past_the_stream_cap_is_refetched_not_streamed(tmp_path):
    run = RunDir(tmp_path, "burst")
    for step in range(1, 11):
        run.metrics(step, loss=float(step))
    with LiveServer(tmp_path, max_stream_points=20) as server:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("burst")
        # 50 lines in one write: one change, 50 new points per series, past the cap of 20
        lines = b"".join(
            run.fmt.encode_line(
                {"v": 1, "seq": run.seq + k, "t": time.time(), "kind": "metrics",
                 "step": 11 + k, "epoch": 0.0, "values": {"loss": float(11 + k)}}
            )
            for k in range(50)
        )  # fmt: skip
        run.seq += 50
        with open(run.events, "ab") as f:
            f.write(lines)
        client.pump(lambda m: m["type"] == "runs" and client.summaries["burst"]["step"] == 60)
        run.metrics(61, loss=61.0)
        client.pump_until_held("burst", "loss", list(range(1, 62)))
        streamed = [
            m["series"]["loss"]
            for m in client.messages
            if m["type"] == "points" and "loss" in m["series"]
        ]
        assert all(len(s["step"]) <= 20 for s in streamed)
        assert client.fetches == 2  # the gap was seen and filled over HTTP
        assert client.held["burst"]["loss"]["y"] == [float(s) for s in range(1, 62)]
        client.close()


def test_a_socket_that_takes_nothing_within_the_send_timeout_is_dropped(tmp_path):
    rng = random.Random(3)
    run = RunDir(tmp_path, "w")
    # a queue so long it never overflows: only the send timeout can notice the stall
    with LiveServer(tmp_path, client_queue=1_000_000, send_timeout_s=0.5) as server:
        stalled = stalled_websocket(server.port)
        hub = server.ctx.hub
        flood_until_dropped(run, hub, rng)
        assert hub.stats.resyncs == 0
        deadline = time.monotonic() + 10
        while len(hub.clients) != 0:  # its handler ended: the hub holds nothing for it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stalled.close()


def test_a_killed_trainer_raises_a_crashed_alert(tmp_path):
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = RunDir(tmp_path, "k", pid=trainer.pid)
        run.metrics(1, loss=1.0)
        with LiveServer(tmp_path) as server:
            client = ProtocolClient(server)
            snapshot = client.connect()
            assert snapshot["runs"][0]["status"] == "running"
            trainer.kill()
            trainer.wait()  # reaped: the pid is gone
            alert = client.pump(lambda m: m["type"] == "alert", timeout=20)
            assert (alert["run"], alert["kind"], alert["step"]) == ("k", "crashed", 1)
            assert str(trainer.pid) in alert["message"]
            client.close()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


def test_a_run_copied_in_with_many_nan_streaks_does_not_disconnect_clients(tmp_path):
    root = tmp_path / "runs"
    RunDir(root, "quiet").metrics(1, loss=1.0)
    outside = RunDir(tmp_path / "elsewhere", "copied")
    now = time.time()
    for k in range(3000):  # 1500 NaN streaks, all recent
        outside.metrics(k + 1, t=now + k * 0.001, loss=math.nan if k % 2 == 0 else 1.0)
    with LiveServer(root) as server:
        client = ProtocolClient(server)
        client.connect()
        os.rename(outside.path, root / "copied")
        last = client.pump(lambda m: m["type"] == "alert" and "more" in m["message"])
        assert last["message"] == "and 1495 more (nonfinite) up to step 2999"
        alerts = [m for m in client.messages if m["type"] == "alert"]
        assert [a["step"] for a in alerts] == [1, 3, 5, 7, 9, 2999]
        assert "resync" not in [m["type"] for m in client.messages]
        assert server.ctx.hub.stats.resyncs == 0 and server.ctx.hub.stats.disconnects == 0
        client.close()


def test_shutdown_closes_with_1012_service_restart(tmp_path):
    from websockets.exceptions import ConnectionClosed

    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    server = LiveServer(tmp_path)
    server.start()
    try:
        for stop_hub_first in (True, False):
            ws = ws_connect(server)
            assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
            if stop_hub_first:  # the app's own shutdown step, with uvicorn still serving
                hub = server.ctx.hub
                asyncio.run_coroutine_threadsafe(hub.stop(), hub._loop).result(10)
            else:  # the whole server, as Ctrl-C does
                server.stop()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
            ws.close()
    finally:
        server.stop()


def test_a_reset_without_new_points_is_announced_by_the_generation(tmp_path):
    run = RunDir(tmp_path, "t")
    for step in range(1, 6):
        run.metrics(step, loss=float(step))
    with LiveServer(tmp_path) as server:
        client = ProtocolClient(server)
        client.connect()
        client.fetch("t")
        old_generation = client.generation["t"]
        assert client.held["t"]["loss"]["step"] == [1, 2, 3, 4, 5]
        # replaced by a file that holds only its start: the new generation has no points
        new = run.path / "events.jsonl.new"
        new.write_bytes(run.fmt.encode_line({"v": 1, "seq": 0, "t": time.time(), "kind": "start"}))
        os.replace(new, run.events)
        msg = client.pump(
            lambda m: (
                m["type"] == "runs"
                and any(r["id"] == "t" and r["generation"] != old_generation for r in m["runs"])
            )
        )
        assert client.generation["t"] != old_generation
        assert client.held["t"] == {}  # refetched: nothing from the old generation is left
        assert not [m for m in client.messages if m["type"] == "points"]
        assert msg["runs"][0]["step"] is None
        client.close()


def test_metrics_count_accepted_and_connected_clients(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from mudpuppy_monitor.core.summary import STATUSES
    from mudpuppy_monitor.server import metrics

    assert metrics.STATUSES is STATUSES  # one list of statuses, the core's
    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        first, second = ws_connect(server), ws_connect(server)
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        first.close()
        deadline = time.monotonic() + 10
        while len(server.ctx.hub.clients) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        families = text_string_to_metric_families(server.get("/metrics")[2].decode())
        values = {s.name: s.value for f in families for s in f.samples}
        assert values["mudpuppy_ws_connections_total"] == 2.0
        assert values["mudpuppy_ws_clients"] == 1.0
        second.close()
