"""The terminal view's news: the notification rules fed by its own reads of real run files, the
news line, and `--bell` ringing the terminal bell once per frame that has news."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from mudpuppy_callback import RunWriter
from rich.console import Console

from mudpuppy_monitor.cli import main
from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.notify.news import News
from mudpuppy_monitor.tui.app import TuiView, main_tui, run_live
from mudpuppy_monitor.tui.render import render_snapshot
from tests.test_notify_service import _finished_run

BEL = "\x07"


def _view(root: Path, bell: bool = False) -> TuiView:
    mon = Monitor(root, parallel=False)
    return TuiView(mon, str(root), news=News(mon, clock=time.time), bell=bell)


def _text(view: TuiView) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_snapshot(view.snapshot(), 120))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_news_is_what_happens_after_the_view_started(tmp_path):
    _finished_run(tmp_path, "old", time.time() - 3600)  # a NaN and an end: history
    live = RunWriter(tmp_path, "alpha", max_steps=100, gpus=[])
    live.log(1, {"loss": 1.0})
    view = _view(tmp_path)
    first = _text(view)
    assert view.fresh == [] and "news   " not in first

    live.log(2, {"loss": float("nan"), "grad_norm": float("nan")})
    shown = _text(view)
    assert [(n.run, n.rule) for n in view.fresh] == [("alpha", "nonfinite")]
    assert "news   alpha: loss is NaN at step 2 (also grad_norm) (0s ago)" in shown

    for step in range(3, 40):  # the rest of the burst is not news
        live.log(step, {"loss": float("nan")})
    _text(view)
    assert view.fresh == []

    live.close("completed")
    shown = _text(view)
    assert [(n.run, n.rule) for n in view.fresh] == [("alpha", "completed")]
    assert "news   alpha: completed at step 39" in shown


def test_the_filter_keeps_news_of_hidden_runs_off_the_screen(tmp_path):
    import re

    a = RunWriter(tmp_path, "shown", max_steps=100, gpus=[])
    b = RunWriter(tmp_path, "hidden", max_steps=100, gpus=[])
    mon = Monitor(tmp_path, parallel=False)
    view = TuiView(mon, str(tmp_path), news=News(mon, clock=time.time),
                   pattern=re.compile("shown"))  # fmt: skip
    view.snapshot()
    b.log(1, {"loss": float("nan")})
    view.snapshot()
    assert view.fresh == []
    a.log(1, {"loss": float("nan")})
    view.snapshot()
    assert [n.run for n in view.fresh] == ["shown"]


@pytest.mark.parametrize("bell", [True, False])
def test_bell_rings_once_per_frame_with_news(tmp_path, bell):
    live = RunWriter(tmp_path, "alpha", max_steps=100, gpus=[])
    live.log(1, {"loss": 1.0})
    other = RunWriter(tmp_path, "bravo", max_steps=100, gpus=[])
    other.log(1, {"loss": 1.0})
    # what happens between frames: news, no news, two runs' news in one frame
    script = [
        lambda: live.log(2, {"loss": float("nan")}),
        lambda: live.log(3, {"loss": float("nan")}),
        lambda: (live.close("completed"), other.close("failed")),
    ]

    def sleep(_: float) -> None:
        if script:
            script.pop(0)()

    view = _view(tmp_path, bell=bell)
    out = io.StringIO()
    console = Console(file=out, width=120, height=40, force_terminal=True)
    run_live(view, console, 0.01, sleep=sleep, max_frames=4, screen=False)
    assert out.getvalue().count(BEL) == (2 if bell else 0)


def test_once_never_rings(tmp_path):
    live = RunWriter(tmp_path, "alpha", max_steps=100, gpus=[])
    live.log(1, {"loss": float("nan")})
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True)
    assert main_tui(tmp_path, gpu="none", once=True, console=console, bell=True) == 0
    assert BEL not in out.getvalue()


def test_stall_after_makes_the_view_call_a_stall_in_seconds(tmp_path):
    live = RunWriter(tmp_path, "alpha", max_steps=100, gpus=[])  # this process: alive
    live.log(1, {"loss": 1.0})
    now = [time.time()]
    mon = Monitor(tmp_path, parallel=False, clock=lambda: now[0], stall_after_s=30.0)
    view = TuiView(mon, str(tmp_path), get_time=lambda: now[0],
                   news=News(mon, clock=lambda: now[0], stall_after_s=30.0))  # fmt: skip
    view.snapshot()
    now[0] += 31
    snap = view.snapshot()
    assert [r.status for r in snap.runs] == ["stalled"]
    assert [(n.rule, n.text) for n in view.fresh] == [
        ("stalled", "alpha: stalled: no event for 31 s at step 1")
    ]


def test_tui_reads_stall_after_from_the_settings_file_and_rejects_a_bad_one(
    tmp_path, monkeypatch, capsys
):
    from mudpuppy_monitor.tui.cli import stall_after_from

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mudpuppy.toml").write_text("stall_after = 120\n")
    assert stall_after_from(None, None) == 120
    assert stall_after_from(None, 5.0) == 5.0  # the flag wins
    (tmp_path / "mudpuppy.toml").write_text("stall_after = -1\n")
    (tmp_path / "runs").mkdir()
    assert main(["tui", "runs", "--once", "--gpu", "none"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mudpuppy-monitor: mudpuppy.toml: stall_after must be > 0 seconds, not -1"
    )
