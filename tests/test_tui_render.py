"""The terminal view's pure parts: formatters and the width-fitted layout of a snapshot."""

from __future__ import annotations

import math
import re
from io import StringIO
from types import SimpleNamespace

import pytest
from rich.console import Console, RenderableType

from mudpuppy_monitor.tui.formatting import (
    format_age,
    format_bytes,
    format_eta,
    format_number,
    format_step,
    progress_bar,
    sparkline,
)
from mudpuppy_monitor.tui.render import Snapshot, fit_height, render_snapshot, sort_runs

NAN = math.nan
_GAP = re.compile(r"\s{2,}")


# -- helpers shared by the other tui tests --------------------------------------------------------


def render_plain(renderable: RenderableType, width: int) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in out
    return out


def table_cells(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Headers of the runs table and {run name: {header: cell}}; cells are 2+ spaces apart."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("status "))
    headers = _GAP.split(lines[start].strip())
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 1 :]:
        cells = _GAP.split(line.strip())
        if len(cells) != len(headers):
            break
        rows[cells[1]] = dict(zip(headers, cells, strict=True))
    return headers, rows


# -- formatters -----------------------------------------------------------------------------------


def test_sparkline_scales_between_min_and_max():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([3.0, 1.0, 2.0], 8) == "█▁▅"


def test_sparkline_keeps_only_the_last_width_points():
    assert sparkline([100.0, 1, 2, 3], 3) == "▁▅█"


def test_sparkline_flat_series_is_mid_height():
    assert sparkline([0.7, 0.7, 0.7], 5) == "▄▄▄"
    assert sparkline([5.0], 5) == "▄"


def test_sparkline_marks_non_finite_points_and_scales_the_rest():
    assert sparkline([1.0, NAN, 3.0, math.inf, None, 2.0], 10) == "▁×█××▅"
    assert sparkline([NAN, NAN], 4) == "××"


def test_sparkline_empty_and_zero_width():
    assert sparkline([], 10) == ""
    assert sparkline([1.0, 2.0], 0) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (59.4, "0:59"),
        (59.6, "1:00"),
        (65, "1:05"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (3661, "1:01:01"),
        (86399, "23:59:59"),
        (2 * 86400 + 3 * 3600 + 4 * 60 + 5, "2d 03:04:05"),
        (None, "--:--"),
        (NAN, "--:--"),
        (math.inf, "--:--"),
        (-5, "--:--"),
    ],
)
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.9, "42s"), (185, "3m05s"), (7620, "2h07m"), (4 * 86400 + 3 * 3600, "4d03h")],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text
    assert format_age(None) == "-"


def test_format_number_keeps_nan_visible():
    assert format_number(NAN) == "NaN"
    assert format_number(math.inf) == "inf"
    assert format_number(-math.inf) == "-inf"
    assert format_number(None) == "-"
    assert format_number(0.5123) == "0.5123"
    assert format_number(1.234567) == "1.235"
    assert format_number(2e-5, 3) == "2e-05"
    assert format_number(0.00015, 3) == "0.00015"
    assert format_number(25800) == "2.58e+04"


def test_format_bytes_and_step():
    assert format_bytes(61 * 2**30) == "61.0GiB"
    assert format_bytes(512 * 2**20) == "512.0MiB"
    assert format_bytes(100) == "100B"
    assert format_bytes(None) == "-"
    assert format_step(120, 1000) == "120/1000"
    assert format_step(120, None) == "120"
    assert format_step(None, 10) == "-"


def test_progress_bar_has_eighth_cell_resolution():
    assert progress_bar(5, 10, 10) == "█████·····"
    assert progress_bar(15, 100, 10) == "█▌········"
    assert progress_bar(0, 10, 4) == "····"
    assert progress_bar(12, 10, 4) == "████"
    assert progress_bar(3, None, 4) == "····"
    assert progress_bar(NAN, 10, 4) == "····"


# -- layout ---------------------------------------------------------------------------------------


def _run(**kw):
    base = dict(
        id="r",
        name="r",
        source="native",
        status="running",
        step=0,
        max_steps=None,
        epoch=None,
        loss=None,
        best_loss=None,
        eval_loss=None,
        learning_rate=None,
        grad_norm=None,
        steps_per_s=None,
        eta_s=None,
        last_event_t=None,
        last_event_age_s=None,
        nonfinite=0,
        bad_lines=0,
        pid=None,
        error=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def _snapshot(**kw) -> Snapshot:
    runs = [
        _run(
            id="sweep/a",
            name="alpha",
            status="running",
            step=120,
            max_steps=1000,
            epoch=0.125,
            loss=NAN,
            best_loss=2.1,
            eval_loss=2.25,
            learning_rate=1e-4,
            grad_norm=math.inf,
            steps_per_s=3.2,
            eta_s=275,
            last_event_t=995.0,
            nonfinite=2,
        ),
        _run(
            id="b",
            name="bravo",
            source="hf-trainer-state",
            status="completed",
            step=24,
            max_steps=24,
            epoch=3.0,
            loss=0.5123,
            best_loss=0.41,
            eval_loss=0.6,
            learning_rate=2e-5,
            grad_norm=1.23,
            steps_per_s=0.5,
            last_event_t=900.0,
        ),
        _run(
            id="c",
            name="charlie",
            source="llamafactory",
            status="stalled",
            step=7,
            loss=1.5,
            best_loss=1.5,
            eval_loss=1.7,
            learning_rate=3e-4,
            grad_norm=0.9,
            steps_per_s=0.1,
            eta_s=4000,
            last_event_t=700.0,
        ),
    ]
    gpus = [
        SimpleNamespace(
            index=0,
            name="Sim GPU",
            util_pct=87.0,
            mem_used_bytes=61 * 2**30,
            mem_total_bytes=80 * 2**30,
            temperature_c=62.0,
            power_w=312.0,
            power_limit_w=700.0,
        )
    ]
    args = dict(
        root="runs",
        runs=runs,
        now=1000.0,
        loss={"sweep/a": [3.0, 2.5, 2.2, NAN, 2.1], "b": [1.0, 0.5], "c": [1.5]},
        gpus=gpus,
        gpu_runs={0: ["alpha"]},
        gpu_backend="fake",
        gpu_simulated=True,
    )
    args.update(kw)
    return Snapshot(**args)


ALL_HEADERS = [
    "status",
    "run",
    "source",
    "step",
    "progress",
    "epoch",
    "loss",
    "trend",
    "best",
    "eval loss",
    "lr",
    "grad norm",
    "steps/s",
    "ETA",
    "updated",
]


@pytest.mark.parametrize(
    ("width", "headers"),
    [
        (80, ["status", "run", "step", "loss", "trend", "best", "steps/s", "ETA", "updated"]),
        (
            120,
            [
                "status",
                "run",
                "step",
                "epoch",
                "loss",
                "trend",
                "best",
                "eval loss",
                "lr",
                "steps/s",
                "ETA",
                "updated",
            ],
        ),
        (200, ALL_HEADERS),
    ],
)
def test_columns_are_dropped_by_importance_to_fit_the_width(width, headers):
    text = render_plain(render_snapshot(_snapshot(), width), width)
    got, rows = table_cells(text)
    assert got == headers
    assert max(len(line) for line in text.splitlines()) <= width
    assert rows["alpha"]["step"] == "120/1000"
    assert rows["alpha"]["loss"] == "NaN"
    assert rows["alpha"]["status"] == "running"
    assert rows["bravo"]["status"] == "completed"
    assert rows["charlie"]["ETA"] == "1:06:40"
    assert rows["alpha"]["updated"] == "5s"


def test_full_width_cells_are_exact():
    _, rows = table_cells(render_plain(render_snapshot(_snapshot(), 200), 200))
    assert rows["alpha"] == {
        "status": "running",
        "run": "alpha",
        "source": "native",
        "step": "120/1000",
        "progress": "█▏········",
        "epoch": "0.12",
        "loss": "NaN",
        "trend": "█▄▂×▁",
        "best": "2.1",
        "eval loss": "2.25",
        "lr": "0.0001",
        "grad norm": "inf",
        "steps/s": "3.2",
        "ETA": "4:35",
        "updated": "5s",
    }
    assert rows["bravo"]["source"] == "hf"
    assert rows["bravo"]["ETA"] == "done"
    assert rows["charlie"]["step"] == "7"
    assert rows["charlie"]["progress"] == "··········"
    assert rows["charlie"]["trend"] == "▄"


def test_a_narrow_terminal_keeps_status_name_and_step():
    text = render_plain(render_snapshot(_snapshot(), 40), 40)
    headers, rows = table_cells(text)
    assert headers[:3] == ["status", "run", "step"]
    assert rows["alpha"]["step"] == "120/1000"


def test_long_names_are_cut_with_an_ellipsis():
    long = "x" * 60
    snap = _snapshot(runs=[_run(name=long, step=3, last_event_t=1.0)])
    _, rows = table_cells(render_plain(render_snapshot(snap, 120), 120))
    (name,) = rows
    assert name == "x" * 31 + "…"
    assert rows[name]["step"] == "3"


def test_header_counts_runs_by_status_and_labels_a_simulated_gpu():
    first = render_plain(render_snapshot(_snapshot(), 120), 120).splitlines()[0]
    assert first == (
        "mudpuppy-monitor  3 runs: 1 running, 1 stalled, 1 completed  GPU: fake (simulated)  runs"
    )
    off = render_plain(render_snapshot(_snapshot(gpu_backend=None, gpus=()), 120), 120)
    assert off.splitlines()[0].endswith("GPU: off  runs")
    snap = _snapshot(gpu_backend="none", gpu_simulated=False, gpu_reason="no driver", gpus=())
    none = render_plain(render_snapshot(snap, 120), 120).splitlines()[0]
    assert none.endswith("GPU: none  runs  (no GPU: no driver)")


def test_a_long_root_is_cut_not_the_counts():
    snap = _snapshot(root="/very/long/" + "x" * 100, gpus=())
    first = render_plain(render_snapshot(snap, 80), 80).splitlines()[0]
    assert len(first) == 80
    assert first.startswith("3 runs: 1 running, 1 stalled, 1 completed  GPU: fake (simulated)  /")
    assert first.endswith("…")


def test_the_program_name_goes_first_only_when_the_header_fits():
    first = render_plain(render_snapshot(_snapshot(root="runs/"), 80), 80).splitlines()[0]
    assert first == "3 runs: 1 running, 1 stalled, 1 completed  GPU: fake (simulated)  runs/"


def test_header_shows_the_filter_count():
    snap = _snapshot(total_runs=10, filter="^a")
    first = render_plain(render_snapshot(snap, 120), 120).splitlines()[0]
    assert "3 of 10 runs match /^a/" in first


def test_gpu_line_and_alerts():
    lines = render_plain(render_snapshot(_snapshot(), 120), 120).splitlines()
    assert "GPU0 Sim GPU  util  87%  VRAM 61.0GiB/80.0GiB  62°C  312/700 W  runs: alpha" in lines
    shared = render_plain(render_snapshot(_snapshot(gpu_others={0: 2}), 120), 120)
    assert "312/700 W  runs: alpha +2 other processes" in shared
    assert "NaN    alpha: 2 non-finite train value(s)" in lines
    assert "stall  charlie: no event for 5m00s" in lines


def test_crash_and_failure_alerts():
    snap = _snapshot(
        runs=[
            _run(name="dead", status="crashed", pid=4242, last_event_t=1.0),
            _run(name="bad", status="failed", error="CUDA out of memory", bad_lines=3),
        ],
        gpus=(),
    )
    lines = render_plain(render_snapshot(snap, 120), 120).splitlines()
    assert "crash  dead: process 4242 is gone, no end event" in lines
    assert "failed bad: CUDA out of memory" in lines
    assert "bad    bad: 3 unreadable line(s) skipped" in lines


def test_many_runs_show_the_most_recent_first_and_count_the_rest():
    runs = [_run(id=f"r{i}", name=f"run-{i:02d}", step=i, last_event_t=float(i)) for i in range(12)]
    snap = _snapshot(runs=sort_runs(runs), gpus=(), loss={})
    text = render_plain(render_snapshot(snap, 120, max_rows=4), 120)
    _, rows = table_cells(text)
    assert list(rows) == ["run-11", "run-10", "run-09", "run-08"]
    assert "+8 more (not shown)" in text.splitlines()


def test_sort_puts_runs_without_events_last():
    runs = [_run(name="z", last_event_t=None), _run(name="b", last_event_t=5.0), _run(name="a")]
    runs.append(_run(name="c", last_event_t=9.0))
    assert [r.name for r in sort_runs(runs)] == ["c", "b", "a", "z"]


def test_no_runs_yet():
    snap = _snapshot(runs=[], gpus=())
    assert render_plain(render_snapshot(snap, 80), 80).splitlines()[1] == "no runs found yet"


def test_fit_height_gives_alerts_a_quarter_and_rows_the_rest():
    runs = [_run(id=f"r{i}", name=f"r{i}", status="crashed") for i in range(7)]
    snap = _snapshot(runs=runs, gpus=(), loss={})
    assert fit_height(snap, 40) == (None, None)  # 7 rows + 7 alerts + 2 header lines fit
    # 12 lines: header, table header, 5 rows, "+2 more", 3 alerts and "+4 more alert(s)"
    assert fit_height(snap, 12) == (5, 3)
    lines = render_plain(render_snapshot(snap, 120, 5, 3), 120).splitlines()
    assert len(lines) == 12
    assert lines[7] == "+2 more (not shown)"
    assert lines[-1] == "+4 more alert(s)"
    # one run fewer: the line that said "+N more" holds the last row instead
    snap = _snapshot(runs=runs[:6], gpus=(), loss={})
    assert fit_height(snap, 12) == (None, 3)


def test_control_characters_from_files_never_reach_the_terminal():
    evil = "evil\x1b]52;c;ZXZpbA==\x07\nrow\x9b2J"
    snap = _snapshot(
        root="runs\x1b[2J",
        runs=[
            _run(name=evil, step=1, last_event_t=999.0),
            _run(name="f", status="failed", error="boom\x1b[31m\r\nfake line"),
        ],
        gpus=[SimpleNamespace(index=0, name="GPU\x1b[5m", util_pct=None)],
        gpu_runs={0: [evil]},
    )
    text = render_plain(render_snapshot(snap, 200), 200)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    lines = text.splitlines()
    _, rows = table_cells(text)
    assert "evil?]52;c;ZXZpbA==??row?2J" in rows
    assert lines[0].endswith("  runs?[2J")
    assert "failed f: boom?[31m??fake line" in lines
    (gpu,) = [line for line in lines if line.startswith("GPU0")]
    assert gpu.startswith("GPU0 GPU?[5m  util    -  VRAM -/-  -  - W  runs: evil?]52;")


def test_bidi_controls_from_files_are_shown_inert():
    disguised = "uni-\u202etxt.exe"  # would read "uni-exe.txt"
    snap = _snapshot(
        runs=[
            _run(name=disguised, step=1),
            _run(name="iso\u2066x\u2069", status="failed", error="e\u202dr\u200fr"),
        ],
        gpus=(),
    )
    text = render_plain(render_snapshot(snap, 200), 200)
    for ch in ("\u202e", "\u2066", "\u2069", "\u202d", "\u200f"):
        assert ch not in text
    _, rows = table_cells(text)
    assert "uni-?txt.exe" in rows
    assert "failed iso?x?: e?r?r" in text.splitlines()


def test_colours_on_a_terminal():
    console = Console(file=StringIO(), width=200, force_terminal=True, color_system="standard")
    console.print(render_snapshot(_snapshot(), 200))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    # cells are padded inside their style
    assert "\x1b[32mrunning  \x1b[0m" in out
    assert "\x1b[36mcompleted\x1b[0m" in out
    assert "\x1b[33mstalled  \x1b[0m" in out
    assert "\x1b[1;31m   NaN\x1b[0m" in out  # the loss cell
    assert "\x1b[1;31m      inf\x1b[0m" in out  # the grad norm cell
    assert "\x1b[1;31m×\x1b[0m" in out  # the NaN point of the trend
    # only the program name is bold in the header, not the counts after it
    assert out.startswith("\x1b[1mmudpuppy-monitor  \x1b[0m3 runs: ")
