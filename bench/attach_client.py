"""Attaching as a user sees it: a server process launched, then asked over HTTP what a dashboard
asks, the same way for mudpuppy-monitor and for TensorBoard.

- dashboard-ready: every run is listed with its last step, and every run's charts are answered at
  the resolution the page asks for. For mudpuppy-monitor that is what `web/store.js` asks
  (through `web/batch.js`) for the overlaid runs, all of them on a first load: one `POST
  /api/series` with `{"runs": [...up to 100 ids], "names": <the charted series, sorted>, "x":
  "step", "points": 2000}`, answered as JSON, each series holding the run's last step.
  TensorBoard has no server-side decimation: its charts are the scalars of each tag
  (`/data/plugin/scalars/scalars?run=&tag=`), ready when they reach the run's last step.
- full fidelity: then every run's whole `loss` series (`points=100000`, raw, for mudpuppy;
  the `loss` scalars for TensorBoard), every point present.

Requests go over up to 6 keep-alive connections at once with `Accept-Encoding: gzip`, as a
browser sends them, and JSON answers of both systems are decoded with orjson (closer to a
browser's JSON.parse than the standard library's decoder); bytes on the wire are the response
bodies as sent (compressed where the server compresses). Resident memory is sampled every 20 ms over the server and its children.
"""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from mudpuppy_monitor.server.columns import decode as decode_columns

# the series the dashboard draws (the page asks for all of them; the daemon leaves out those a
# run does not have)
from mudpuppy_monitor.snapshot.data import CHART_SERIES as DASHBOARD_SERIES

DASHBOARD_POINTS = 2000
FULL_POINTS = 100_000
CONNECTIONS = 6  # a browser's connections per host
BATCH_RUNS = 100  # runs per batched series request (web/batch.js MAX_RUNS)
POLL_S = 0.02  # between tries while the server is not answering yet
RETRY_S = 0.1  # between tries of a query whose answer is not complete yet
BINARY = "application/x-mudpuppy-columns"


class Wire:
    """HTTP GETs over keep-alive connections (one per thread), counting body bytes as sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        self.lock = threading.Lock()
        self.bytes = 0

    def get(self, path: str, accept: str | None = None) -> tuple[int, str, bytes]:
        """(status, content type, body decompressed); OSError while nobody listens."""
        return self._ask("GET", path, {"Accept": accept or "application/json"})

    def post_json(self, path: str, doc: Any) -> Any:
        """POST a JSON document, as the dashboard's batched loads do; the answer decoded."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        status, _, raw = self._ask("POST", path, headers, orjson.dumps(doc))
        if status != 200:
            raise OSError(f"HTTP {status} for POST {path}")
        return orjson.loads(raw)

    def _ask(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, str, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers={"Accept-Encoding": "gzip", **headers})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            raise OSError(f"no answer for {method} {path}") from None
        with self.lock:
            self.bytes += len(raw)
        if resp.getheader("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return resp.status, resp.getheader("Content-Type") or "", raw

    def get_json(self, path: str) -> Any:
        status, _, body = self.get(path)
        if status != 200:
            raise OSError(f"HTTP {status} for {path}")
        return orjson.loads(body)


class ServerProcess:
    """A server launched as a subprocess; its resident memory (with children) sampled."""

    def __init__(self, cmd: list[str], stop_signal: int = signal.SIGINT) -> None:
        self.cmd = cmd
        self.stop_signal = stop_signal
        self.log = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0
        self.peak_main = 0
        self.peak_tree = 0
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> float:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log, env=env)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self.t0

    def since(self) -> float:
        return time.perf_counter() - self.t0

    def _sample(self) -> None:
        import psutil

        assert self.proc is not None
        try:
            main = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while not self._done.is_set():
            try:
                rss = main.memory_info().rss
                tree = rss
                for child in main.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak_main = max(self.peak_main, rss)
            self.peak_tree = max(self.peak_tree, tree)
            self._done.wait(0.02)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"{self.cmd[:4]} exited: {self.log.read().decode()[-2000:]}")

    def stop(self) -> None:
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _until(server: ServerProcess, deadline: float, fn: Callable[[], bool], pause: float) -> None:
    while True:
        server.check_alive()
        try:
            if fn():
                return
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{server.cmd[:4]} not ready after {server.since():.0f} s")
        time.sleep(pause)


class Mudpuppy:
    name = "mudpuppy-monitor"

    def __init__(self, binary: bool = True) -> None:
        self.binary = binary  # ask for the binary columns, as the dashboard does

    def listed(self, wire: Wire, runs: list[str], steps: int) -> bool:
        got = {s["id"]: s.get("step") for s in wire.get_json("/api/runs")["runs"]}
        return all(got.get(r) == steps for r in runs)

    def _series(self, wire: Wire, run: str, query: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/runs/{quote(run)}/series?{urlencode(query)}"
        status, ctype, body = wire.get(path, accept=BINARY if self.binary else None)
        if status != 200:
            raise OSError(f"HTTP {status} for {path}")
        if ctype.startswith(BINARY):
            return decode_columns(body)
        return orjson.loads(body)

    def dashboard_runs(self, wire: Wire, runs: list[str], steps: int) -> bool:
        """The page's first load: the overlaid runs' charts in batches of BATCH_RUNS."""
        names = sorted(DASHBOARD_SERIES)
        for i in range(0, len(runs), BATCH_RUNS):
            batch = runs[i : i + BATCH_RUNS]
            ask = {"runs": batch, "names": names, "x": "step", "points": DASHBOARD_POINTS}
            answered = {r["id"]: r["series"] for r in wire.post_json("/api/series", ask)["runs"]}
            for run in batch:
                series = answered.get(run)
                # the rates (steps_per_s, tokens_per_s) have one point less than the run has rows
                if not series or any(s["count"] < steps - 1 for s in series.values()):
                    return False
        return True

    def full(self, wire: Wire, run: str, steps: int) -> bool:
        query = {"names": "loss", "x": "step", "points": FULL_POINTS}
        got = self._series(wire, run, query)["series"]["loss"]
        return len(got["x"]) == steps and not got["decimated"]


class TensorBoard:
    name = "TensorBoard"
    tags = ("loss", "grad_norm", "learning_rate", "tokens_seen")

    def listed(self, wire: Wire, runs: list[str], steps: int) -> bool:
        if not set(runs) <= set(wire.get_json("/data/runs")):
            return False
        tags = wire.get_json("/data/plugin/scalars/tags")
        return all(set(self.tags) <= set(tags.get(r, {})) for r in runs)

    def _scalars(self, wire: Wire, run: str, tag: str) -> list[list[float]]:
        return wire.get_json(f"/data/plugin/scalars/scalars?{urlencode({'run': run, 'tag': tag})}")

    def dashboard(self, wire: Wire, run: str, steps: int) -> bool:
        for tag in self.tags:
            rows = self._scalars(wire, run, tag)
            if not rows or rows[-1][1] != steps:
                return False
        return True

    def full(self, wire: Wire, run: str, steps: int) -> bool:
        return len(self._scalars(wire, run, "loss")) == steps


def measure(
    system: Any, server: ServerProcess, port: int, runs: list[str], steps: int, timeout_s: float
) -> dict[str, float]:
    """Launch, then time dashboard-ready and full fidelity from the launch."""
    wire = Wire(port)
    server.start()
    deadline = time.perf_counter() + timeout_s
    try:
        _until(server, deadline, lambda: system.listed(wire, runs, steps), POLL_S)
        listed_s = server.since()

        def each(check: Callable[[Wire, str, int], bool]) -> None:
            def one(run: str) -> None:
                _until(server, deadline, lambda: check(wire, run, steps), RETRY_S)

            with ThreadPoolExecutor(CONNECTIONS) as pool:
                list(pool.map(one, runs))

        before = wire.bytes
        if hasattr(system, "dashboard_runs"):  # one batched ask for every run, as the page does
            _until(server, deadline, lambda: system.dashboard_runs(wire, runs, steps), RETRY_S)
        else:
            each(system.dashboard)
        ready_s = server.since()
        ready_bytes = wire.bytes - before
        before = wire.bytes
        each(system.full)
        full_s = server.since()
        full_bytes = wire.bytes - before
    finally:
        server.stop()
    return {
        "listed_s": listed_s,
        "ready_s": ready_s,
        "full_s": full_s,
        "ready_bytes": ready_bytes,
        "full_bytes": full_bytes,
        "peak_main": server.peak_main,
        "peak_tree": server.peak_tree,
    }


def mudpuppy_cmd(python: str, root: Path, port: int, cache: str | None) -> list[str]:
    cmd = [python, "-m", "mudpuppy_monitor", "serve", str(root), "--port", str(port)]
    if cache is None:
        return cmd + ["--no-cache"]
    return cmd + ["--cache-dir", cache]


def tensorboard_cmd(python: str, root: Path, port: int, steps: int) -> list[str]:
    return [
        python,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(root),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--samples_per_plugin",
        f"scalars={max(steps, FULL_POINTS)}",
    ]
