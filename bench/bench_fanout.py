"""Fan-out: 50 WebSocket clients, 20 runs logging at 10 Hz, one client that never reads.

The daemon is the real `mudpuppy-monitor serve` in a subprocess; its CPU is read from /proc
(psutil) over the measured window. The healthy clients (asyncio, one event loop in this
process) note (arrival - write time) of every `loss` point. The same load is run twice: all 50
clients healthy, then 49 healthy + 1 that completes the handshake and never reads a byte. The
stalled client must not move the healthy clients' p99.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from bench.bench_freshness import Daemon, Writer, make_runs, pct

CLIENTS = 50
RUNS = 20
EXTRA_SERIES = 5  # random values in every line: bigger, incompressible messages
OBSERVERS = 5
WARMUP_LINES = 1200
WARMUP_SERIES = 150


def stalled_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock  # and never read again


async def healthy_clients(
    url: str,
    n: int,
    stop: threading.Event,
    out: list[float],
    counts: list[int],
    observers: int = OBSERVERS,
) -> None:
    """n clients that read everything; the first OBSERVERS also time every `loss` point."""
    from websockets.asyncio.client import connect

    async def one(k: int) -> None:
        async with connect(url, proxy=None, compression=None, max_size=None) as ws:
            # everything but the ballast run (which only the stalled client receives)
            runs = [f"run-{i:02d}" for i in range(RUNS)]
            await ws.send(json.dumps({"type": "subscribe", "runs": runs}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(decode=False), 0.5)
                except asyncio.TimeoutError:
                    continue
                if k >= observers:
                    continue
                now = time.time()
                msg = orjson.loads(raw)
                if msg.get("type") == "points" and "loss" in msg["series"]:
                    ts = msg["series"]["loss"]["t"]
                    counts[k] += len(ts)
                    out.extend(now - t for t in ts)

    await asyncio.gather(*(one(k) for k in range(n)))


def fill_ballast(run_dir: Path) -> None:
    """About 8 MB of incompressible lines, quickly."""
    import mudpuppy_callback as fmt

    rng = np.random.default_rng(1)
    with open(run_dir / fmt.EVENTS_FILE, "ab", buffering=0) as f:
        for step in range(1, WARMUP_LINES + 1):
            values = {f"b{j}": float(v) for j, v in enumerate(rng.random(WARMUP_SERIES))}
            f.write(fmt.encode_line({"v": 1, "seq": step, "t": time.time(), "kind": "metrics",
                                     "step": step, "epoch": 0.0, "values": values}))  # fmt: skip
            if step % 50 == 0:
                time.sleep(0.02)


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def measure(seconds: float, stalled: bool) -> dict[str, float]:
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = make_runs(root, RUNS)
        ballast = make_runs(root / "ballast", 1)[0]
        with Daemon(root) as daemon:
            while len(daemon.runs()) < RUNS + 1:
                time.sleep(0.1)
            latencies: list[float] = []
            counts = [0] * CLIENTS
            stop = threading.Event()
            n_healthy = CLIENTS - 1 if stalled else CLIENTS
            ws_url = daemon.url.replace("http", "ws") + "/ws"
            # the observers time points in this process; the other healthy clients read in a
            # process of their own, so their load does not delay the observers' event loop
            readers = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.bench_fanout",
                    "--readers",
                    ws_url,
                    str(n_healthy - OBSERVERS),
                ],  # fmt: skip
                cwd=Path(__file__).resolve().parent.parent,
            )
            loop_thread = threading.Thread(
                target=asyncio.run,
                args=(healthy_clients(ws_url, OBSERVERS, stop, latencies, counts),),
                daemon=True,
            )
            loop_thread.start()
            stuck = stalled_client(daemon.port) if stalled else None
            time.sleep(2.0)  # everyone connected
            # warm-up: big lines into a ballast run that only the stalled client subscribes to
            # (the healthy ones subscribe to the 20 runs), so its socket buffers are full when
            # the measured window starts; the same warm-up runs without the stalled client
            fill_ballast(ballast)
            time.sleep(2.0)
            latencies.clear()
            counts[:] = [0] * CLIENTS
            proc = psutil.Process(daemon.proc.pid)  # type: ignore[union-attr]
            cpu0, wall0 = proc.cpu_times(), time.monotonic()
            writer = Writer(runs, seconds, extra=EXTRA_SERIES, first_step=10_000)
            writer.start()
            writer.join()
            cpu1, wall1 = proc.cpu_times(), time.monotonic()
            deadline = time.monotonic() + 10  # let the healthy clients drain their sockets
            while sum(counts) < writer.written * OBSERVERS and time.monotonic() < deadline:
                time.sleep(0.1)
            resyncs = metric(daemon.url, "mudpuppy_ws_resyncs_total")
            dropped = metric(daemon.url, "mudpuppy_ws_slow_disconnects_total")
            clients_end = metric(daemon.url, "mudpuppy_ws_clients")
            stop.set()
            loop_thread.join(10)
            readers.terminate()
            readers.wait(10)
            if stuck is not None:
                stuck.close()
    busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    lat = np.array(latencies) * 1000.0
    return {
        "cpu_pct": 100.0 * busy / (wall1 - wall0),
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "points": float(sum(counts)),
        "expected": float(writer.written * OBSERVERS),
        "resyncs": resyncs,
        "dropped": dropped,
        "clients_end": clients_end,
    }


def run(quick: bool = False) -> list[dict]:
    seconds = 10.0 if quick else 30.0
    base = measure(seconds, stalled=False)
    slow = measure(seconds, stalled=True)
    ratio = slow["p99"] / base["p99"] if base["p99"] > 0 else float("nan")
    lost = slow["expected"] - slow["points"]
    return [
        {
            "bench": "fanout",
            "metric": "daemon CPU, 50 clients x 20 runs at 10 Hz, 1 stalled",
            "value": round(slow["cpu_pct"], 1),
            "unit": "% of one core",
            "target": "report",
            "compare": f"all 50 healthy: {base['cpu_pct']:.1f} %",
        },  # fmt: skip
        {
            "bench": "fanout",
            "metric": "healthy clients p99 (append->ws), 1 client stalled",
            "value": round(slow["p99"], 1),
            "unit": "ms",
            "target": "not delayed by the stalled one",
            "compare": f"no stalled client: p99 {base['p99']:.1f} ms, ratio {ratio:.2f}x; "
            f"p50 {slow['p50']:.1f} vs {base['p50']:.1f} ms",
        },  # fmt: skip
        {
            "bench": "fanout",
            "metric": "points lost by the observed healthy clients, 1 stalled",
            "value": lost,
            "unit": "points",
            "target": "0",
            "compare": f"{slow['points']:.0f} of {slow['expected']:.0f} received; stalled client: "
            f"{slow['resyncs']:.0f} resyncs, {slow['dropped']:.0f} dropped",
        },  # fmt: skip
    ]


def readers_main(url: str, n: int) -> None:
    """`--readers URL N`: N healthy clients that read everything and time nothing."""
    asyncio.run(healthy_clients(url, n, threading.Event(), [], [0] * n, observers=0))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--readers"]:
        readers_main(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    for row in run(quick="--quick" in sys.argv):
        print(row)
