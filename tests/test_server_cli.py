"""`mudpuppy-monitor serve` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import find_free_port
from tests.serverutil import REPO, RunDir, ServeProcess


def run_serve(*args: str, timeout: float = 30, env: dict | None = None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "mudpuppy_monitor", "serve", *args]
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
    )


def test_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_serve(str(tmp_path), "--port", str(port), "--gpu", "none")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mudpuppy-monitor: port {port} on 127.0.0.1 is already in use; choose another with --port"
    ]


def test_connections_to_the_bound_socket_send_without_nagle_delay():
    """asyncio turns Nagle off only on sockets that say IPPROTO_TCP; with it on, a response
    written in two parts waits for the client's delayed ACK (40 ms) on a keep-alive connection."""
    import asyncio

    from mudpuppy_monitor.server.cli import bind_socket

    async def accepted_nodelay() -> int:
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def made(transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        class Proto(asyncio.Protocol):
            connection_made = staticmethod(made)

        sock = bind_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Proto, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_root_that_is_a_file_is_exit_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    done = run_serve(str(f), "--port", str(find_free_port()))
    assert done.returncode == 2
    assert done.stderr.strip() == f"mudpuppy-monitor: {f} is not a directory"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_unreadable_root_is_exit_2(tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0)
    tmp_path.chmod(0o755)
    # root reads everything: run as nobody so permissions apply
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import mudpuppy_monitor.cli"], cwd=REPO,
                           capture_output=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("the interpreter is not usable by an unprivileged user here")
    done = run_serve(str(root), "--port", str(find_free_port()), prefix=prefix)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"mudpuppy-monitor: cannot read {root}: permission denied"


def test_bad_arguments_are_exit_2(tmp_path):
    assert run_serve(str(tmp_path), "--port", "70000").returncode == 2
    assert run_serve(str(tmp_path), "--gpu", "tpu").returncode == 2
    assert run_serve(str(tmp_path), "--gpu-interval", "0").returncode == 2


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "fast"])
def test_a_peak_that_is_not_a_positive_number_is_one_line_and_exit_2(tmp_path, value):
    done = run_serve(str(tmp_path), "--peak-tflops", value, "--gpu", "none")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 or "invalid float value" in done.stderr, done.stderr
    assert "--peak-tflops" in done.stderr


def test_a_given_peak_reaches_mfu(tmp_path):
    run = RunDir(tmp_path, "a", meta={"gpus": [], "config": {"precision": "bf16"}})
    run.metrics(1, loss=1.0)
    with ServeProcess(tmp_path, "--gpu", "fake", "--peak-tflops", "312.5") as server:
        eff = server.get_json("/api/runs/a")["efficiency"]
    assert eff["peak_tflops_override"] == 312.5


def test_prints_the_url_and_serves_until_interrupted(tmp_path):
    RunDir(tmp_path, "a").metrics(1, loss=1.0)
    server = ServeProcess(tmp_path, "--gpu", "fake")
    with server:
        assert f"serving {tmp_path} at http://127.0.0.1:{server.port}/\n" in server.output
        assert [r["id"] for r in server.get_json("/api/runs")["runs"]] == ["a"]
        assert server.get_json("/api/gpus")["simulated"] is True
        proc = server.proc
    assert proc.returncode == 130, server.output  # Ctrl-C, as a shell reports it


def test_token_is_printed_in_the_url_and_required(tmp_path):
    server = ServeProcess(tmp_path, "--token", "tok123", "--gpu", "none")
    with server:
        assert f"http://127.0.0.1:{server.port}/?token=tok123" in server.output
        assert server.get("/api/runs", headers={"Authorization": "Bearer nope"})[0] == 401
        assert server.get("/api/runs")[0] == 200  # auth_headers() carries the token


def test_a_missing_root_is_waited_for(tmp_path):
    root = tmp_path / "later"
    with ServeProcess(root, "--gpu", "none") as server:
        assert "does not exist yet; waiting for it" in server.output
        assert server.get_json("/api/runs")["runs"] == []
        RunDir(root, "late").metrics(1, loss=1.0)
        deadline = time.monotonic() + 15
        while not server.get_json("/api/runs")["runs"]:
            assert time.monotonic() < deadline, "the run in the new root never appeared"
            time.sleep(0.1)
        assert server.get_json("/api/runs")["runs"][0]["id"] == "late"


def test_open_starts_the_browser_on_the_url(tmp_path):
    seen = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(browser), "DISPLAY": ""}
    root = tmp_path / "runs"
    root.mkdir()
    with ServeProcess(root, "--open", "--gpu", "none", env=env) as server:
        deadline = time.monotonic() + 10
        while not seen.exists() or not seen.read_text().strip():
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        assert seen.read_text().strip() == f"http://127.0.0.1:{server.port}/"


def test_a_cache_dir_inside_the_root_or_with_no_cache_is_exit_2(tmp_path):
    done = run_serve(str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--gpu", "none")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mudpuppy-monitor: --cache-dir {tmp_path / 'c'} is inside ROOT; choose one outside it"
    ]
    assert not (tmp_path / "c").exists()
    done = run_serve(str(tmp_path), "--cache-dir", "/tmp/x", "--no-cache")
    assert done.returncode == 2 and "contradict" in done.stderr


def _big_run(root, name: str, steps: int = 12000) -> RunDir:
    """A run of more than 1 MiB (cached), written in one go."""
    run = RunDir(root, name, max_steps=steps)
    lines = [
        run.fmt.encode_line(
            {"v": 1, "seq": step, "t": 1_700_000_000.0 + step, "kind": "metrics", "step": step,
             "values": {"loss": 1.0 / step, "grad_norm": 0.5, "learning_rate": 1e-4}}
        )
        for step in range(1, steps + 1)
    ]  # fmt: skip
    with open(run.events, "ab") as f:
        f.write(b"".join(lines))
    assert run.events.stat().st_size > 1 << 20
    return run


def test_daemons_sharing_a_cache_directory(tmp_path):
    """Two daemons started together on the same runs and cache directory both load and store
    every run; each answers the same, a third start resumes every run from what they left, and
    no temporary file is left behind."""
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        _big_run(root, name)
    cache = tmp_path / "cache"
    args = ("--gpu", "none", "--cache-dir", str(cache))

    def answers(server: ServeProcess) -> dict:
        runs = server.wait_loaded()
        got = {}
        for r in runs:
            doc = server.get_json(f"/api/runs/{r['id']}/series?names=loss&points=100000")
            doc.pop("generation")
            got[r["id"]] = (r["step"], doc)
        return got

    with ServeProcess(root, *args) as one, ServeProcess(root, *args) as two:
        first, second = answers(one), answers(two)
    assert first == second and sorted(first) == ["a", "b", "c"]
    assert all(step == 12000 for step, _ in first.values())
    entries = sorted((cache / "runs-v1").iterdir())
    assert len(entries) == 3 and all(p.suffix == ".snap" for p in entries)
    for p in entries:
        os.utime(p, ns=(0, 0))  # a start that uses an entry touches it
    with ServeProcess(root, *args) as three:
        assert answers(three) == first
    assert all(p.stat().st_mtime_ns > 0 for p in entries)  # every run resumed from the cache
    assert sorted((cache / "runs-v1").iterdir()) == entries


def test_a_restarted_daemon_resumes_from_its_cache_outside_the_root(tmp_path):
    """A run of more than 1 MiB is cached on the first start (by the daemon, not in the root),
    and the second start serves the same answers; the root holds only what the writer wrote."""
    root = tmp_path / "runs"
    _big_run(root, "big")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    cache = tmp_path / "cache"
    answers = []
    for _ in range(2):
        with ServeProcess(root, "--gpu", "none", "--cache-dir", str(cache)) as server:
            server.wait_loaded()  # the first start reads the run in the background
            answers.append(
                [
                    server.get("/api/runs/big/series?names=loss,grad_norm&points=300")[2],
                    server.get("/api/runs/big/series?names=loss&points=100000")[2],
                ]
            )
            assert server.get_json("/api/runs")["runs"][0]["step"] == 12000
        entries = list((cache / "runs-v1").glob("*.snap"))
        assert len(entries) == 1
        if len(answers) == 1:
            os.utime(entries[0], ns=(0, 0))  # a lookup that uses the entry touches it
    assert entries[0].stat().st_mtime_ns > 0  # the second start resumed from the entry
    # the same data; generations are the daemon's own numbers (a run it loaded in the
    # background had a placeholder first)
    first, second = ([json.loads(a) for a in pair] for pair in answers)
    for got in (*first, *second):
        got.pop("generation")
    assert first == second
    assert len(first[1]["series"]["loss"]["y"]) == 12000
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert os.stat(cache).st_mode & 0o777 == 0o700
