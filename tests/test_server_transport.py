"""Connections cannot hold the daemon's resources: a slow or partial request head is cut off, a
WebSocket dropped for not reading loses its socket, and normal clients are untouched."""

from __future__ import annotations

import json
import random
import socket
import time

import psutil
import pytest

from mudpuppy_monitor.server import transport
from tests.serverutil import LiveServer, RunDir, flood_until_dropped, stalled_websocket, ws_connect


def _closed_by_server(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if it did not."""
    t0 = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - t0 < timeout:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        if data == b"":
            return time.monotonic() - t0
    return None


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.fixture()
def short_head_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(transport, "HEAD_TIMEOUT_S", 0.5)
    return 0.5


def test_a_partial_request_head_is_cut_off(tmp_path, short_head_timeout):
    with LiveServer(tmp_path) as server:
        partial = _connect(server.port)
        partial.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        silent = _connect(server.port)  # connects and never sends a byte
        for sock in (partial, silent):
            waited = _closed_by_server(sock, timeout=5)
            assert waited is not None, "the connection was held open"
            sock.close()


def test_a_trickled_head_is_cut_off_even_while_bytes_keep_coming(tmp_path, short_head_timeout):
    with LiveServer(tmp_path) as server:
        sock = _connect(server.port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                sock.sendall(b"X-A: b\r\n")  # a header line every 50 ms, never the blank line
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_server(sock, timeout=0.05) is not None:
                closed = True
                break
        assert closed
        sock.close()


def test_requests_and_keep_alive_are_unaffected(tmp_path, short_head_timeout):
    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        sock = _connect(server.port)
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # the head and the JSON body, maybe in pieces
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            time.sleep(0.2)  # well inside the head timeout between requests
        # after a response the clock starts again: a half-sent next request is cut off too
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert _closed_by_server(sock, timeout=5) is not None
        sock.close()


def test_a_websocket_outlives_the_head_timeout(tmp_path, short_head_timeout):
    run = RunDir(tmp_path, "a")
    run.metrics(1, loss=1.0)
    with LiveServer(tmp_path) as server:
        ws = ws_connect(server)
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        time.sleep(3 * short_head_timeout)
        ws.send(json.dumps({"type": "subscribe", "runs": ["a"]}))
        run.end("completed", step=1)
        kinds = set()
        deadline = time.monotonic() + 10
        while "alert" not in kinds:
            assert time.monotonic() < deadline
            kinds.add(json.loads(ws.recv(timeout=10))["type"])
        ws.close()


def _server_sockets(server_port: int, peer_port: int) -> list[str]:
    """The states of this process's sockets from the server's port to the given peer port."""
    return [
        c.status
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == server_port and c.raddr and c.raddr.port == peer_port
    ]


def test_a_dropped_websocket_releases_its_socket(tmp_path, monkeypatch):
    monkeypatch.setattr(transport, "CLOSE_GRACE_S", 0.5)
    rng = random.Random(11)
    run = RunDir(tmp_path, "w")
    with LiveServer(tmp_path, client_queue=1_000_000, send_timeout_s=0.5) as server:
        stalled = stalled_websocket(server.port)
        peer = stalled.getsockname()[1]
        assert _server_sockets(server.port, peer) == [psutil.CONN_ESTABLISHED]
        hub = server.ctx.hub
        flood_until_dropped(run, hub, rng)
        # the hub let it go, and so does the transport: no socket left holding its buffers
        deadline = time.monotonic() + 10
        while _server_sockets(server.port, peer):
            assert time.monotonic() < deadline, _server_sockets(server.port, peer)
            time.sleep(0.1)
        stalled.close()
