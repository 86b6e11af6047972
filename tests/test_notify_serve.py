"""Notifications from a real `serve`: the command line, the settings file, the lifespan, a real
webhook receiver, and a receiver that hangs while the WebSocket carries on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from mudpuppy_callback import RunWriter

from mudpuppy_monitor.cli import build_parser
from mudpuppy_monitor.errors import UsageError
from mudpuppy_monitor.notify.config import NotifyFlags, notify_settings
from mudpuppy_monitor.server.cli import notify_settings_from
from tests.receiver import Receiver
from tests.serverutil import REPO, LiveServer, ServeProcess, ws_connect
from tests.test_notify_service import WRITER, _callback_dir, _finished_run

SECRET = "secret-token-123456"


def _status(server, run_id: str) -> str | None:
    for r in server.get_json("/api/runs")["runs"]:
        if r["id"] == run_id:
            return r["status"]
    return None


def _wait_status(server, run_id: str, want: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _status(server, run_id) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_id} never became {want}: {_status(server, run_id)}")
        time.sleep(0.05)


def test_serve_notify_posts_nan_crash_and_completion_once_each_and_no_history(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    _finished_run(root, "old-nan-run", time.time() - 3600)  # ended before the daemon started
    with Receiver() as rx, ServeProcess(root, "--gpu", "none", "--notify", rx.url()) as server:
        assert f"notifying 1 channel: generic http://127.0.0.1:{rx.port}/***" in server.output
        assert SECRET not in server.output

        live = RunWriter(root, "live", max_steps=1000, gpus=[])
        for step in range(1, 6):
            live.log(step, {"loss": 2.0 - step * 0.01})
        _wait_status(server, "live", "running")
        live.log(6, {"loss": float("nan")})
        nan = rx.wait_for(1, timeout=5.0)
        assert len(nan) == 1, "no POST within 5 s of the NaN line"
        for step in range(7, 57):  # the rest of the burst is not news
            live.log(step, {"loss": float("nan")})

        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), _callback_dir(), "victim"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            _wait_status(server, "victim", "running")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert len(rx.wait_for(2, timeout=5.0)) == 2, "no POST within 5 s of the crash"

        live.close("completed")
        assert len(rx.wait_for(3, timeout=5.0)) == 3, "no POST within 5 s of the end"
        time.sleep(1.0)  # anything more would arrive now
        bodies = [r.json() for r in rx.requests]
        port = server.port

    assert [(b["kind"], b["run"]) for b in bodies] == [
        ("nonfinite", "live"),
        ("crashed", "victim"),
        ("completed", "live"),
    ]
    assert bodies[0]["message"] == "loss is NaN at step 6"
    assert bodies[0]["value"] == "NaN"
    # the link points at the dashboard this daemon serves, opened on the run
    assert bodies[0]["url"] == f"http://127.0.0.1:{port}/#run=live"
    assert bodies[2]["message"] == "completed at step 56"
    assert all(r.path == f"/hook/{SECRET}" for r in rx.requests)


def test_a_hanging_receiver_holds_up_neither_the_stream_nor_the_others(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    with Receiver(hold=True) as hang, Receiver() as good:
        notify = notify_settings(None, NotifyFlags(notify=(hang.url("/a/hang-123456"), good.url())))
        with LiveServer(root, notify=notify) as server:
            ws = ws_connect(server)
            try:
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
                run = RunWriter(root, "r", max_steps=100, gpus=[])
                run.log(1, {"loss": 1.0})
                run.log(2, {"loss": float("nan")})
                assert hang.arrived.wait(5.0), "the hanging receiver was never called"
                assert len(good.wait_for(1, timeout=5.0)) == 1
                # the hanging request is still open: lines keep reaching the page
                for step in range(3, 8):
                    run.log(step, {"loss": 1.0 / step})
                steps: list[int] = []
                kinds: set[str] = set()
                deadline = time.monotonic() + 10
                while 7 not in steps and time.monotonic() < deadline:
                    msg = json.loads(ws.recv(timeout=10))
                    if msg["type"] == "points" and "loss" in msg["series"]:
                        steps += msg["series"]["loss"]["step"]
                    if msg["type"] == "alert":
                        kinds.add(msg["kind"])
                assert not hang.release.is_set()
                assert steps[-5:] == [3, 4, 5, 6, 7]
                assert "nonfinite" in kinds
            finally:
                ws.close()
            service = server.ctx.notifications
        # stopped (LiveServer.stop raises if it does not): the lifespan gave the channels their
        # 2 s and left the hung request behind
        stats = {r.channel.target.url: r.channel.stats for r in service.notifier.routes}
        assert stats[good.url()].sent == 1
        assert stats[hang.url("/a/hang-123456")].sent == 0


def test_stall_after_drives_the_status_machine(tmp_path):
    root = tmp_path / "runs"
    run = RunWriter(root, "quiet", max_steps=100, gpus=[])  # this process: alive
    run.log(1, {"loss": 1.0})
    with LiveServer(root, stall_after_s=1.0) as server:
        # the learned window is at least 60 s: only the setting makes this a stall in seconds
        _wait_status(server, "quiet", "stalled", timeout=10.0)
        run.log(2, {"loss": 0.9})
        _wait_status(server, "quiet", "running", timeout=5.0)
    run.close("completed")


def _args(*argv: str):
    return build_parser().parse_args(["serve", "runs", *argv])


def test_flags_win_over_the_settings_file_found_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mudpuppy.toml").write_text(
        "stall_after = 900\n"
        'dashboard_url = "http://gpu-box:5980"\n'
        "[notify]\n"
        'urls = ["https://hooks.slack.com/services/T0/B0/XXXXXXXX"]\n'
        "rules = { spike = false }\n"
    )
    from_file = notify_settings_from(_args())
    assert from_file.rules.stall_after_s == 900
    assert from_file.dashboard_url == "http://gpu-box:5980"
    assert [c.url for c in from_file.channels] == [
        "https://hooks.slack.com/services/T0/B0/XXXXXXXX"
    ]
    assert "spike" not in from_file.channels[0].rules

    flags = notify_settings_from(
        _args("--stall-after", "30", "--notify", "ntfy://ntfy.example.org/alerts")
    )
    assert flags.rules.stall_after_s == 30
    assert [c.url for c in flags.channels] == ["ntfy://ntfy.example.org/alerts"]
    assert "spike" not in flags.channels[0].rules  # the file's switches still apply


def test_pyproject_table_is_found_and_config_names_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.mudpuppy]\nstall_after = 120\n")
    assert notify_settings_from(_args()).rules.stall_after_s == 120
    other = tmp_path / "elsewhere.toml"
    other.write_text("stall_after = 45\n")
    assert notify_settings_from(_args("--config", str(other))).rules.stall_after_s == 45


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--notify", "ftp://x/y"), "command line: --notify: a notification URL must start with"),
        (("--stall-after", "-5"), "command line: --stall-after must be > 0 seconds, not -5.0"),
        (("--config", "missing.toml"), "--config missing.toml: no such file"),
    ],
)
def test_bad_notification_flags_are_usage_errors(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        notify_settings_from(_args(*argv))
    assert str(err.value).startswith(message)


def test_a_bad_settings_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "runs").mkdir()
    bad = tmp_path / "mudpuppy.toml"
    bad.write_text(
        '[notify]\nurls = ["https://example.org/hook/abcdef-secret"]\nrules = { spiek = true }\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "mudpuppy_monitor", "serve", str(tmp_path / "runs"),
         "--config", str(bad), "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"mudpuppy-monitor: {bad}: notify.rules.spiek: unknown rule")
    assert "abcdef-secret" not in done.stderr


def test_notifications_that_cannot_start_leave_the_daemon_serving(tmp_path, monkeypatch, caplog):
    from mudpuppy_monitor.notify import NotificationService

    async def broken(self) -> None:
        raise RuntimeError("no threads left")

    monkeypatch.setattr(NotificationService, "start", broken)
    root = tmp_path / "runs"
    RunWriter(root, "r", max_steps=10, gpus=[]).log(1, {"loss": 1.0})
    with Receiver() as rx:
        notify = notify_settings(None, NotifyFlags(notify=(rx.url(),)))
        with LiveServer(root, notify=notify) as server:
            assert [r["id"] for r in server.get_json("/api/runs")["runs"]] == ["r"]
            assert server.ctx.notifications is None
    assert "notifications could not start; serving without them" in caplog.text
