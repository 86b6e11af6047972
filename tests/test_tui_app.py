"""The terminal view over the real core: fixture runs plus a live native run, frame by frame."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path

import mudpuppy_callback
import pytest
from rich.console import Console

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.tui.app import Frame, TuiView, run_live
from mudpuppy_monitor.tui.render import render_snapshot
from tests.conftest import copy_fixture_runs
from tests.test_tui_render import render_plain, table_cells

NAN = float("nan")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _line(seq: int, t: float, kind: str, **fields) -> bytes:
    return mudpuppy_callback.encode_line({"v": 1, "seq": seq, "t": t, "kind": kind, **fields})


def write_native_run(root: Path, name: str, t0: float, gpus: list[str] | None = None) -> Path:
    """A run still training in this very process (pid alive): four logs, the last loss NaN."""
    run = root / name
    run.mkdir(parents=True)
    meta = {
        "format": mudpuppy_callback.FORMAT,
        "run_id": name,
        "name": name,
        "created": t0,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": ["train.py"],
        "config": {},
        "versions": {},
        "world_size": 1,
        "max_steps": 100,
        "num_train_epochs": 1,
        "gpus": gpus or [],
    }
    (run / mudpuppy_callback.META_FILE).write_text(json.dumps(meta))
    lines = [_line(0, t0, "start")]
    for i, (step, loss) in enumerate([(10, 2.0), (20, 1.5), (30, 1.25), (40, NAN)], start=1):
        values = {"loss": loss, "learning_rate": 5e-5, "grad_norm": 0.75}
        lines.append(_line(i, t0 + i, "metrics", step=step, epoch=step / 100, values=values))
    (run / mudpuppy_callback.EVENTS_FILE).write_bytes(b"".join(lines))
    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_fixture_runs(tmp_path / "runs")


@pytest.fixture
def t0() -> float:
    return round(time.time())


def _view(root: Path, clock: Clock, **kw) -> TuiView:
    return TuiView(Monitor(root, clock=clock), "runs", get_time=clock, **kw)


@pytest.mark.parametrize("width", [80, 120, 200])
def test_fixture_runs_and_a_live_run_render_exact_cells(root, t0, width):
    write_native_run(root, "live", t0)
    clock = Clock(t0 + 6)
    snap = _view(root, clock).snapshot()
    text = render_plain(render_snapshot(snap, width), width)
    headers, rows = table_cells(text)
    assert set(rows) == {"live", "hf-run", "lf-run"}
    assert list(rows)[0] == "live"  # the most recent activity first
    assert rows["live"]["status"] == "running"
    assert rows["live"]["step"] == "40/100"
    assert rows["live"]["loss"] == "NaN"
    assert rows["live"]["updated"] == "2s"
    assert rows["live"]["ETA"] == "0:06"
    assert rows["live"]["trend"] == "█▃▁×"
    assert rows["hf-run"]["step"] == "120/120"
    assert rows["hf-run"]["loss"] == "0.02474"
    assert rows["hf-run"]["status"] == "completed"
    assert rows["hf-run"]["ETA"] == "done"
    assert rows["lf-run"]["step"] == "3240/6750"
    assert rows["lf-run"]["loss"] == "1.702"
    if width == 80:
        assert headers == ["status", "run", "step", "loss", "trend", "steps/s", "ETA", "updated"]
        assert rows["lf-run"]["trend"] == "▄▆▂▁▅▆█▆"  # the last 8 logged losses
    if width >= 120:
        assert rows["live"]["best"] == "1.25"
        assert rows["hf-run"]["eval loss"] == "0.04945"
        assert rows["lf-run"]["eval loss"] == "1.566"
        assert rows["live"]["lr"] == "5e-05"
        assert rows["hf-run"]["trend"] == "▄█▅▃▃▃▂▂▂▂▂▁▂▁▂▂"  # the last 16
    if width >= 200:
        assert headers[-1] == "updated" and "grad norm" in headers and "source" in headers
        assert rows["live"]["source"] == "native"
        assert rows["hf-run"]["source"] == "hf"
        assert rows["lf-run"]["source"] == "llamafactory"
        assert rows["live"]["grad norm"] == "0.75"
        assert rows["hf-run"]["grad norm"] == "7.04"
        assert rows["lf-run"]["grad norm"] == "-"
        assert rows["lf-run"]["progress"] == "████▊·····"
    else:
        assert "source" not in headers
    assert "NaN    live: 1 non-finite train value(s)" in text.splitlines()


def test_filter_keeps_matching_runs_and_says_so(root, t0):
    write_native_run(root, "live", t0)
    snap = _view(root, Clock(t0 + 6), pattern=re.compile("-run$")).snapshot()
    text = render_plain(render_snapshot(snap, 120), 120)
    assert "2 of 3 runs match /-run$/" in text.splitlines()[0]
    _, rows = table_cells(text)
    assert set(rows) == {"hf-run", "lf-run"}


APPEND = textwrap.dedent(
    """
    import sys, mudpuppy_callback
    path, seq, t, step, loss = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    line = mudpuppy_callback.encode_line(
        {"v": 1, "seq": seq, "t": t, "kind": "metrics", "step": step, "values": {"loss": loss}}
    )
    with open(path, "ab") as f:
        f.write(line)
    """
)


def _append_from_another_process(run: Path, seq: int, t: float, step: int, loss: float) -> None:
    events = run / mudpuppy_callback.EVENTS_FILE
    cmd = [sys.executable, "-c", APPEND, str(events), str(seq), str(t), str(step), str(loss)]
    subprocess.run(cmd, check=True, timeout=30)


def test_live_frames_follow_appends_from_another_process(root, t0):
    run = write_native_run(root, "live", t0)
    clock = Clock(t0 + 6)
    view = _view(root, clock)
    drawn = []
    take_snapshot = view.snapshot

    def recording_snapshot():
        drawn.append(take_snapshot())
        return drawn[-1]

    view.snapshot = recording_snapshot  # type: ignore[method-assign]

    def sleep(_seconds: float) -> None:
        # between two frames the trainer (another process) logs one more step; time moves on
        n = len(drawn)
        _append_from_another_process(run, 4 + n, t0 + 6 + n, 40 + 10 * n, 1.0 - 0.25 * n)
        clock.t += 1.0

    console = Console(file=StringIO(), width=120, force_terminal=True, color_system=None)
    assert run_live(view, console, 0.5, sleep=sleep, max_frames=3, screen=False) == 0
    frames = [table_cells(render_plain(render_snapshot(s, 120), 120))[1]["live"] for s in drawn]
    assert [f["step"] for f in frames] == ["40/100", "50/100", "60/100"]
    assert [f["loss"] for f in frames] == ["NaN", "0.75", "0.5"]
    assert [f["updated"] for f in frames] == ["2s", "0s", "0s"]
    assert [f["trend"] for f in frames] == ["█▃▁×", "█▅▄×▁", "█▆▅×▂▁"]
    # and it reached the terminal: the last frame Live drew holds the newest step
    out = ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]
    assert "60/100" in out


def test_replaced_events_file_starts_the_trend_over(root, t0):
    run = write_native_run(root, "live", t0)
    clock = Clock(t0 + 6)
    view = _view(root, clock)
    view.snapshot()
    fresh = [_line(0, t0 + 7, "start")]
    fresh += [_line(1, t0 + 8, "metrics", step=5, values={"loss": 3.0})]
    fresh += [_line(2, t0 + 9, "metrics", step=6, values={"loss": 2.0})]
    tmp = run / "events.tmp"
    tmp.write_bytes(b"".join(fresh))
    os.replace(tmp, run / mudpuppy_callback.EVENTS_FILE)
    clock.t = t0 + 10
    _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
    assert rows["live"]["step"] == "6/100"
    assert rows["live"]["trend"] == "█▁"


def test_frame_fits_rows_to_the_terminal_height(tmp_path, t0):
    root = tmp_path / "many"
    for i in range(10):
        write_native_run(root, f"run-{i}", t0 + i)
    view = _view(root, Clock(t0 + 20))
    console = Console(file=StringIO(), width=120, height=8, color_system=None)
    console.print(Frame(view.snapshot(), fit_height=True))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert len(lines) == 8
    _, rows = table_cells(text)
    # header, table header, two rows, "+8 more", two of ten NaN alerts and their count
    assert list(rows) == ["run-9", "run-8"]
    assert lines[4] == "+8 more (not shown)"
    assert lines[5:] == [
        "NaN    run-9: 1 non-finite train value(s)",
        "NaN    run-8: 1 non-finite train value(s)",
        "+8 more alert(s)",
    ]


WRITER = textwrap.dedent(
    """
    import sys, mudpuppy_callback
    w = mudpuppy_callback.RunWriter(sys.argv[1], "writer-run", max_steps=4)
    for step in range(1, 5):
        w.log(step, {"loss": 4.0 / step, "learning_rate": 1e-4, "grad_norm": 0.5}, epoch=step / 4)
        print(step, flush=True)
        sys.stdin.readline()  # the test draws a frame before the next step
    w.log_eval(4, {"eval_loss": 0.75})
    w.close()
    print("closed", flush=True)
    """
)


def test_live_view_follows_a_real_writer_process_step_by_step(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    view = TuiView(Monitor(root), "runs")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for step in range(1, 5):
            assert proc.stdout.readline().strip() == str(step)
            _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
            seen.append((rows["writer-run"]["status"], rows["writer-run"]["step"]))
            seen.append(rows["writer-run"]["loss"])
            proc.stdin.write("\n")
            proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert seen == [
        ("running", "1/4"),
        "4",
        ("running", "2/4"),
        "2",
        ("running", "3/4"),
        "1.333",
        ("running", "4/4"),
        "1",
    ]
    _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
    assert rows["writer-run"]["status"] == "completed"
    assert rows["writer-run"]["eval loss"] == "0.75"
    assert rows["writer-run"]["ETA"] == "done"
    assert rows["writer-run"]["trend"] == "█▃▂▁"


def test_deleted_runs_and_a_deleted_root_leave_the_view_running(root, t0):
    write_native_run(root, "live", t0)
    view = _view(root, Clock(t0 + 6))
    _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
    assert set(rows) == {"live", "hf-run", "lf-run"}
    shutil.rmtree(root / "live")
    _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
    assert set(rows) == {"hf-run", "lf-run"}
    assert view.tails.get("live") == []
    shutil.rmtree(root)
    text = render_plain(render_snapshot(view.snapshot(), 120), 120)
    assert text.splitlines()[1] == "no runs found yet"
    # and it comes back: a recreated run is read from its start
    write_native_run(root, "live", t0 + 10)
    _, rows = table_cells(render_plain(render_snapshot(view.snapshot(), 120), 120))
    assert rows["live"]["step"] == "40/100"
    assert rows["live"]["trend"] == "█▃▁×"


def test_a_log_caught_mid_write_shows_its_last_complete_line(tmp_path, fixtures_dir, t0):
    root = tmp_path / "runs"
    (root / "lf-run").mkdir(parents=True)
    shutil.copy(
        fixtures_dir / "llamafactory" / "qwen_medical_lr_with_eval.partial.jsonl",
        root / "lf-run" / "trainer_log.jsonl",
    )
    run = write_native_run(root, "live", t0)
    with open(run / mudpuppy_callback.EVENTS_FILE, "ab") as f:
        f.write(b'{"v":1,"seq":5,"t":' + str(t0 + 5).encode() + b',"kind":"metrics","st')
    _, rows = table_cells(
        render_plain(render_snapshot(_view(root, Clock(t0 + 6)).snapshot(), 80), 80)
    )
    assert rows["lf-run"]["step"] == "3240/6750"
    assert rows["lf-run"]["loss"] == "1.702"
    assert rows["live"]["step"] == "40/100"
    assert rows["live"]["loss"] == "NaN"


def test_live_mode_without_a_terminal_prints_the_last_frame_once(root, t0):
    write_native_run(root, "live", t0)
    clock = Clock(t0 + 6)
    view = _view(root, clock)

    def sleep(_seconds: float) -> None:
        clock.t += 1.0

    console = Console(file=StringIO(), width=120, color_system=None)  # not a terminal
    assert run_live(view, console, 1.0, sleep=sleep, max_frames=3, screen=False) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in out
    assert out.endswith("\n")
    assert out.count("status ") == 1
    _, rows = table_cells(out)
    assert rows["live"]["updated"] == "4s"  # the third frame, two seconds after the first
