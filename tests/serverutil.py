"""A real mudpuppy-monitor server for tests: uvicorn on a free loopback port.

Two flavours, same surface (`url`, `ws_url`, `start()`, `stop()`, `restart()`, context manager):

    from tests.serverutil import LiveServer, ServeProcess

    # in this process, uvicorn in a background thread (fast; `server.ctx` gives the Monitor,
    # the Hub and the GPU view for white-box checks)
    with LiveServer(root, gpu="fake") as server:
        runs = server.get_json("/api/runs")["runs"]
        ws = websockets.sync.client.connect(server.ws_url)  # or any HTTP/WS client on server.url
        server.restart()  # stop, then start again on the same port (a daemon restart)

    # the real command line in a subprocess (`mudpuppy-monitor serve ROOT --port P ...`);
    # `server.output` holds what it printed (the URL line, errors)
    with ServeProcess(root, "--gpu", "none") as server:
        ...

Runs for it are written with `RunDir` (real files in format v1, one `write` per line):

    run = RunDir(root, "sweep/a", max_steps=100)      # meta.json (pid = this process: alive)
    run.metrics(1, loss=0.9, learning_rate=1e-4)       # appends one events line
    run.end("completed", step=100)

`LiveServer(root, port=None, **settings)`: keyword arguments are `Settings` fields (`token`,
`gpu`, `host`, `web_dir`, `client_queue`, ...). The GPU backend defaults to "none" and the
core's scan interval to 0.2 s so tests see changes quickly. A token set here is required exactly
as in production: pass it with `headers=server.auth_headers()` or `?token=`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import find_free_port

REPO = Path(__file__).resolve().parent.parent


class RunDir:
    """A run directory written the way the training callback writes it (format v1)."""

    def __init__(
        self,
        root: Path,
        run_id: str,
        *,
        pid: int | None = None,
        max_steps: int | None = None,
        meta: dict[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        import mudpuppy_callback as fmt

        self.fmt = fmt
        self.id = run_id
        self.path = Path(root) / run_id
        self.path.mkdir(parents=True, exist_ok=True)
        self.events = self.path / fmt.EVENTS_FILE
        self.seq = 0
        doc = {
            "format": fmt.FORMAT,
            "run_id": run_id,
            "name": run_id.rsplit("/", 1)[-1],
            "created": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid() if pid is None else pid,
            "ppid": os.getppid(),
            "argv": ["train.py"],
            "config": {"model": "tiny", "method": "lora"},
            "versions": {},
            "world_size": 1,
            "max_steps": max_steps,
            "num_train_epochs": 1,
            "gpus": [],
            **(meta or {}),
        }
        tmp = self.path / (fmt.META_FILE + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path / fmt.META_FILE)
        if start:
            self.append("start")

    def append(self, kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        event = {"v": 1, "seq": self.seq, "t": time.time() if t is None else t, "kind": kind}
        event.update(fields)
        line = self.fmt.encode_line(event)
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of the whole line, as the writer does
        finally:
            os.close(fd)
        self.seq += 1
        return event

    def metrics(self, step: int, t: float | None = None, **values: float) -> dict[str, Any]:
        return self.append("metrics", t=t, step=step, epoch=0.0, values=values)

    def eval(self, step: int, **values: float) -> dict[str, Any]:
        return self.append("eval", step=step, values=values)

    def lora(self, step: int, layers: dict[str, dict[str, float]]) -> dict[str, Any]:
        return self.append("lora", step=step, layers=layers)

    def end(self, status: str = "completed", step: int = 0, **extra: Any) -> dict[str, Any]:
        return self.append("end", step=step, status=status, **extra)


class _Base:
    host = "127.0.0.1"
    port: int
    token: str | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body) of a GET; never raises for a status."""
        req = urllib.request.Request(
            self.url + path, headers={**self.auth_headers(), **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def get_json(self, path: str) -> Any:
        status, _, body = self.get(path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def wait_loaded(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Until `/api/runs` lists no run whose backlog is still loading; those summaries."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.get_json("/api/runs")["runs"]
            if not any(r.get("loading") for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs still loading after {timeout} s: {runs}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            self._check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"server on port {self.port} did not come up in {timeout} s")

    def _check_alive(self) -> None:
        pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()


class LiveServer(_Base):
    def __init__(self, root: Path, port: int | None = None, **settings: Any) -> None:
        self.root = Path(root)
        self.port = port or find_free_port()
        settings.setdefault("gpu", "none")
        settings.setdefault("scan_interval_s", 0.2)
        settings.setdefault("graceful_shutdown_s", 2.0)
        self.settings_kwargs = settings
        self.token = settings.get("token")
        self.server: Any = None
        self.app: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def ctx(self) -> Any:
        """The app's Context: `monitor`, `hub`, `gpus`, `settings` (None before start)."""
        return self.app.state.ctx if self.app is not None else None

    def start(self, timeout: float = 20.0) -> None:
        import uvicorn

        from mudpuppy_monitor.server.app import create_app
        from mudpuppy_monitor.server.cli import bind_socket
        from mudpuppy_monitor.server.settings import Settings
        from mudpuppy_monitor.server.transport import uvicorn_config

        settings = Settings(root=self.root, host=self.host, port=self.port, **self.settings_kwargs)
        sock = bind_socket(self.host, self.port)
        self.app = create_app(settings)
        config = uvicorn_config(self.app, settings)
        self.server = uvicorn.Server(config)
        self._error = None

        def run() -> None:
            try:
                self.server.run(sockets=[sock])
            except BaseException as exc:  # shown by start()/stop(), not lost in a thread
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self._error!r}")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        self._thread = None
        if alive:
            raise RuntimeError(f"server on port {self.port} did not stop in {timeout} s")
        if self._error is not None and not isinstance(self._error, SystemExit):
            raise RuntimeError(f"server failed: {self._error!r}")


class ServeProcess(_Base):
    def __init__(self, root: Path, *args: str, port: int | None = None, env: dict | None = None):
        self.root = Path(root)
        self.port = port or find_free_port()
        self.args = list(args)
        self.env = env
        self.token = None
        if "--token" in self.args:
            self.token = self.args[self.args.index("--token") + 1]
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self._log: Path | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mudpuppy_monitor", "serve", str(self.root),
                "--port", str(self.port), *self.args]  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        if "XDG_CACHE_HOME" not in (self.env or {}):
            # the parse cache of a test daemon stays out of the home directory
            env["XDG_CACHE_HOME"] = str(self.root.parent / f".cache-{self.port}")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_ready(timeout)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output += line

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self._reader.join(2)
            raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.output}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        self.proc = None


def flood_until_dropped(run: RunDir, hub: Any, rng: random.Random, timeout_s: float = 60) -> None:
    """Append wide metrics lines until the hub drops a client (a send that timed out)."""
    step = 0
    deadline = time.monotonic() + timeout_s
    while hub.stats.disconnects == 0:
        assert time.monotonic() < deadline, "the stalled socket was never dropped"
        for _ in range(10):
            step += 1
            run.metrics(step, loss=rng.random(), **{f"v{j}": rng.random() for j in range(200)})
        time.sleep(0.05)


def stalled_websocket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def ws_connect(server: _Base, *, origin: str | None = None, headers: dict | None = None, **kw: Any):
    """A real WebSocket client (websockets, sync) on the server's /ws; no proxy, no deflate."""
    from websockets.sync.client import connect

    kw.setdefault("open_timeout", 10)
    return connect(
        server.ws_url,
        proxy=None,
        compression=None,
        origin=origin,  # type: ignore[arg-type]
        additional_headers={**server.auth_headers(), **(headers or {})},
        max_size=None,
        legacy=True,  # a plain connection object, closed by the caller (no context manager)
        **kw,
    )


class ProtocolClient:
    """What a dashboard does with the stream (docs/protocol.md), in Python, for tests.

    Holds per run and series the columns `step` and `y`, fetched over HTTP at full fidelity and
    extended by `points` messages by the `i0` rule: append points with index >= held count;
    refetch the run when `i0` is past the end (a gap) or the generation changed, in a `points`
    message or in a summary (`runs`, `snapshot`: a reset that streams no points).
    """

    def __init__(
        self, server: _Base, subscribe: list[str] | None = None, logs: list[str] | None = None
    ) -> None:
        self.server = server
        self.subscription = subscribe
        self.log_runs = logs or []
        self.ws: Any = None
        self.summaries: dict[str, dict[str, Any]] = {}
        self.held: dict[str, dict[str, dict[str, list[Any]]]] = {}
        self.generation: dict[str, Any] = {}
        # per run with its log open: {"generation", "end", "lines"} (the lines held, by number)
        self.logs: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.fetches = 0

    def connect(self) -> dict[str, Any]:
        self.ws = ws_connect(self.server)
        snapshot = json.loads(self.ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot", snapshot
        self.handle(snapshot)
        if self.subscription is not None:
            self.ws.send(json.dumps({"type": "subscribe", "runs": self.subscription}))
        if self.log_runs:
            # open the stream first, then fetch: the stream covers what follows the answer
            self.ws.send(json.dumps({"type": "logs", "runs": self.log_runs}))
            for run in self.log_runs:
                self.fetch_log(run)
        return snapshot

    def fetch_log(self, run: str) -> None:
        from urllib.parse import quote

        doc = self.server.get_json(f"/api/runs/{quote(run)}/log?tail=1000")
        self.fetches += 1
        self.logs[run] = {"generation": doc["generation"], "end": doc["end"], "lines": doc["lines"]}

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def fetch(self, run: str) -> None:
        from urllib.parse import quote

        doc = self.server.get_json(f"/api/runs/{quote(run)}/series?points=100000")
        self.fetches += 1
        self.generation[run] = doc["generation"]
        self.held[run] = {
            name: {"step": list(s["x"]), "y": list(s["y"])} for name, s in doc["series"].items()
        }

    def handle(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)
        kind = msg["type"]
        if kind == "snapshot":
            self.summaries = {r["id"]: r for r in msg["runs"]}
            self._check_generations(msg["runs"])
        elif kind == "runs":
            self.summaries.update({r["id"]: r for r in msg["runs"]})
            self._check_generations(msg["runs"])
        elif kind == "run_removed":
            self.summaries.pop(msg["id"], None)
            self.held.pop(msg["id"], None)
        elif kind == "points" and msg["run"] in self.held:
            self._points(msg)
        elif kind == "log" and msg["run"] in self.logs:
            self._log(msg)

    def _log(self, msg: dict[str, Any]) -> None:
        held = self.logs[msg["run"]]
        if msg["generation"] != held["generation"] or msg["i0"] > held["end"]:
            self.fetch_log(msg["run"])  # another generation, or lines missed: start over
            return
        new = msg["lines"][held["end"] - msg["i0"] :]
        held["lines"] = (held["lines"] + new)[-1000:]
        held["end"] += len(new)

    def _check_generations(self, runs: list[dict[str, Any]]) -> None:
        # a reset is announced by the summary's generation even when the new generation has
        # no points yet (no `points` message would tell): what is held is void, refetch
        for r in runs:
            if r["id"] in self.held and r["generation"] != self.generation.get(r["id"]):
                self.fetch(r["id"])
            if r["id"] in self.logs and r["generation"] != self.logs[r["id"]]["generation"]:
                self.fetch_log(r["id"])

    def _points(self, msg: dict[str, Any]) -> None:
        run = msg["run"]
        if msg["generation"] != self.generation.get(run):
            self.fetch(run)
            return
        for name, cols in msg["series"].items():
            held = self.held[run].setdefault(name, {"step": [], "y": []})
            n = len(held["step"])
            if cols["i0"] > n:
                self.fetch(run)  # a gap: what we hold is no longer the start of the series
                return
            skip = n - cols["i0"]
            held["step"].extend(cols["step"][skip:])
            held["y"].extend(cols["y"][skip:])

    def pump(self, until: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Handle messages until until(msg) is true for one; returns that message."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no matching message in {timeout} s; last: {self.messages[-3:]}"
                )
            msg = json.loads(self.ws.recv(timeout=left))
            self.handle(msg)
            if until(msg):
                return msg

    def pump_until_held(self, run: str, name: str, steps: list[int], timeout: float = 10.0) -> None:
        def done(_: Any) -> bool:
            return self.held.get(run, {}).get(name, {}).get("step") == steps

        if not done(None):
            self.pump(done, timeout)
