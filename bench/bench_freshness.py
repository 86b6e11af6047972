"""Freshness: a line written to events.jsonl -> the point received on the WebSocket.

A writer appends metrics lines at 10 Hz per run (1 run, then 20 runs), each line carrying its
write time in `t`; a WebSocket client notes when each `loss` point arrives. The daemon is the
real `mudpuppy-monitor serve` in a subprocess. In the same run, TensorBoard gets the same appends
(a SummaryWriter flushed after every scalar) and its HTTP API is polled until the step shows up:
that is the write-to-API latency a TensorBoard user gets (its page then polls every 30 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HZ = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """`mudpuppy-monitor serve ROOT` in a subprocess on a free loopback port."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        cmd = [sys.executable, "-m", "mudpuppy_monitor", "serve", str(self.root)]
        cmd += ["--port", str(self.port), "--gpu", "none", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("serve did not come up")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def runs(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/runs", timeout=5) as r:
            return json.loads(r.read())["runs"]

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_runs(root: Path, n: int) -> list[Path]:
    import mudpuppy_callback as fmt

    paths = []
    for i in range(n):
        d = root / f"run-{i:02d}"
        d.mkdir(parents=True)
        meta = {"format": fmt.FORMAT, "run_id": d.name, "name": d.name, "created": time.time(),
                "host": socket.gethostname(), "pid": os.getpid(), "max_steps": 100000}  # fmt: skip
        (d / fmt.META_FILE).write_text(json.dumps(meta))
        line = fmt.encode_line({"v": 1, "seq": 0, "t": time.time(), "kind": "start"})
        (d / fmt.EVENTS_FILE).write_bytes(line)
        paths.append(d)
    return paths


class Writer(threading.Thread):
    """Appends one metrics line per run every 1/HZ s, runs staggered over the period;
    `extra` adds that many random series to every line (bigger, incompressible messages);
    `spike_every` makes every Nth step's loss a spike (50 against values in [0, 1))."""

    def __init__(
        self,
        runs: list[Path],
        seconds: float,
        extra: int = 0,
        first_step: int = 1,
        spike_every: int = 0,
    ):
        super().__init__(daemon=True)
        self.runs, self.seconds, self.extra, self.first_step = runs, seconds, extra, first_step
        self.spike_every = spike_every
        self.written = 0
        self.rng = np.random.default_rng(0)

    def run(self) -> None:
        import mudpuppy_callback as fmt

        fds = [os.open(d / fmt.EVENTS_FILE, os.O_WRONLY | os.O_APPEND) for d in self.runs]
        slot = 1.0 / HZ / len(self.runs)
        start = time.monotonic()
        k = 0
        try:
            while time.monotonic() - start < self.seconds:
                i, step = k % len(self.runs), k // len(self.runs) + self.first_step
                target = start + k * slot
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                value = float(self.rng.random())
                if self.spike_every and step % self.spike_every == 0:
                    value = 50.0
                values = {"loss": value, "learning_rate": 1e-4, "grad_norm": value * 3}
                for j in range(self.extra):
                    values[f"x{j}"] = float(self.rng.random())
                t = time.time()
                event = {"v": 1, "seq": step, "t": t, "kind": "metrics", "step": step,
                         "epoch": 0.0, "values": values}  # fmt: skip
                os.write(fds[i], fmt.encode_line(event))
                self.written += 1
                k += 1
        finally:
            for fd in fds:
                os.close(fd)


class Recorder(threading.Thread):
    """A WebSocket client noting (arrival - write time) of every `loss` point."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws") + "/ws", proxy=None, compression=None,
                          max_size=None, legacy=True)  # fmt: skip
        self.ws.recv(timeout=10)  # snapshot
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                raw = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            now = time.time()
            msg = json.loads(raw)
            if msg.get("type") == "points" and "loss" in msg["series"]:
                self.latencies.extend(now - t for t in msg["series"]["loss"]["t"])

    def close(self) -> None:
        self.stop.set()
        self.join(2)
        self.ws.close()


def write_backlog(runs: list[Path], steps: int) -> None:
    """`steps` metrics lines per run, written before the daemon starts (its history)."""
    import mudpuppy_callback as fmt

    rng = np.random.default_rng(1)
    t0 = time.time() - steps / HZ
    for d in runs:
        lines = [
            fmt.encode_line({"v": 1, "seq": step, "t": t0 + step / HZ, "kind": "metrics",
                             "step": step, "epoch": 0.0, "values": {"loss": float(rng.random())}})
            for step in range(1, steps + 1)
        ]  # fmt: skip
        with open(d / fmt.EVENTS_FILE, "ab") as f:
            f.write(b"".join(lines))


def measure_ours(
    n_runs: int,
    seconds: float,
    daemon_args: tuple[str, ...] = (),
    spike_every: int = 0,
    backlog: int = 0,
) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = make_runs(root, n_runs)
        write_backlog(runs, backlog)
        with Daemon(root, *daemon_args) as daemon:
            deadline = time.monotonic() + 20
            while len(daemon.runs()) < n_runs and time.monotonic() < deadline:
                time.sleep(0.1)
            rec = Recorder(daemon.url)
            rec.start()
            writer = Writer(runs, seconds, spike_every=spike_every, first_step=backlog + 1)
            writer.start()
            writer.join()
            time.sleep(1.0)  # the last points
            rec.close()
    return np.array(rec.latencies) * 1000.0


class TensorBoardSide:
    """The same appends as scalars in TensorBoard, and a poller of its HTTP API."""

    def __init__(self, logdir: Path, n_runs: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = logdir
        self.writers = [SummaryWriter(str(logdir / f"run-{i:02d}")) for i in range(n_runs)]
        self.written: dict[tuple[int, int], float] = {}
        self.seen: dict[tuple[int, int], float] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def append(self, i: int, step: int, value: float, t: float, timed: bool = True) -> None:
        self.writers[i].add_scalar("loss", value, step, walltime=t)
        self.writers[i].flush()
        if timed:
            with self.lock:
                self.written[(i, step)] = time.time()

    def start_server(self) -> None:
        exe = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or "tensorboard"
        self.proc = subprocess.Popen(
            [exe, "--logdir", str(self.logdir), "--port", str(self.port), "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/data/runs", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("tensorboard did not come up")

    def poll(self, n_runs: int, stop: threading.Event) -> None:
        """Ask the scalars API every 50 ms; note when each step first appears."""
        while not stop.is_set():
            for i in range(n_runs):
                url = (f"http://127.0.0.1:{self.port}/data/plugin/scalars/scalars"
                       f"?run=run-{i:02d}&tag=loss")  # fmt: skip
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        rows = json.loads(r.read())
                except Exception:
                    continue
                now = time.time()
                with self.lock:
                    for _wall, step, _value in rows:
                        self.seen.setdefault((i, int(step)), now)
            time.sleep(0.05)

    def latencies(self) -> np.ndarray:
        with self.lock:
            out = [self.seen[k] - t for k, t in self.written.items() if k in self.seen]
        return np.array(out) * 1000.0

    def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def measure_tensorboard(n_runs: int, seconds: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        tb = TensorBoardSide(Path(tmp), n_runs)
        try:
            for i in range(n_runs):  # step 0 so the runs exist when the server starts
                tb.append(i, 0, 0.0, time.time(), timed=False)
            tb.start_server()
            stop = threading.Event()
            poller = threading.Thread(target=tb.poll, args=(n_runs, stop), daemon=True)
            poller.start()
            # the same schedule as ours, written through TensorBoard's writer
            slot = 1.0 / HZ / n_runs
            start = time.monotonic()
            k = 0
            rng = np.random.default_rng(0)
            while time.monotonic() - start < seconds:
                delay = start + k * slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                tb.append(k % n_runs, k // n_runs + 1, float(rng.random()), time.time())
                k += 1
            time.sleep(12.0)  # TensorBoard reloads every 5 s: let the last writes through
            stop.set()
            poller.join(10)
            return tb.latencies(), k
        finally:
            tb.close()


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def run(quick: bool = False) -> list[dict]:
    seconds = 5.0 if quick else 20.0
    rows: list[dict] = []
    for n in (1, 20):
        tb_lat, tb_written = measure_tensorboard(n, seconds)
        lat = measure_ours(n, seconds)
        p50, p99 = pct(lat, 50), pct(lat, 99)
        tb_p50, tb_p99 = pct(tb_lat, 50), pct(tb_lat, 99)
        rows.append({"bench": "freshness", "metric": f"append->ws p50, {n} run(s) at 10 Hz",
                     "value": round(p50, 1), "unit": "ms", "target": "<= 30 ms",
                     "compare": f"TensorBoard write->API p50 {tb_p50:.0f} ms, ratio "
                                f"{tb_p50 / p50:.0f}x ({len(lat)} points)"})  # fmt: skip
        rows.append({"bench": "freshness", "metric": f"append->ws p99, {n} run(s) at 10 Hz",
                     "value": round(p99, 1), "unit": "ms", "target": "<= 150 ms",
                     "compare": f"TensorBoard write->API p99 {tb_p99:.0f} ms, ratio "
                                f"{tb_p99 / p99:.0f}x ({len(tb_lat)}/{tb_written} scalars seen; "
                                "TensorBoard 2.21, default reload; its page polls every 30 s "
                                "on top)"})  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
