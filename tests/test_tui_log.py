"""The terminal view's output section: the last lines of the selected run's output.log, made
harmless for a terminal, within the height it has."""

from __future__ import annotations

import threading
from io import StringIO
from pathlib import Path

from rich.console import Console

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.launch.output import LOG_FILE
from mudpuppy_monitor.tui.app import Frame, TuiView, run_live
from mudpuppy_monitor.tui.logview import MAX_LOG_LINES
from tests.serverutil import RunDir

HOSTILE = (
    b"\x1b]52;c;cm0gLXJmIH4=\x07clipboard\n"  # OSC 52: write the clipboard
    b"\x1b[2J\x1b[Hcleared\n"  # clear the screen, move home
    b"\xe2\x80\xaename.txt\n"  # U+202E: read right to left
    b"\x1b[31mred\x1b[0m and\tdone\n"
)


def view_of(root: Path, **kw: object) -> TuiView:
    return TuiView(Monitor(root), str(root), **kw)  # type: ignore[arg-type]


def frame_text(view: TuiView, height: int | None = None, width: int = 100) -> list[str]:
    console = Console(file=StringIO(), width=width, height=height or 25, color_system=None)
    console.print(Frame(view.snapshot(), fit_height=height is not None))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    return out.splitlines()


def test_the_last_lines_of_the_selected_run_and_nothing_a_terminal_obeys(tmp_path: Path) -> None:
    job = RunDir(tmp_path, "job")
    job.metrics(1, loss=1.0)
    lines = b"".join(b"line %d\n" % i for i in range(30))
    (job.path / LOG_FILE).write_bytes(lines + HOSTILE + b" 50%|#####\r\n 60%|######\r\n")
    other = RunDir(tmp_path, "other")  # newer, but without output
    other.metrics(1, loss=2.0)
    out = frame_text(view_of(tmp_path))
    at = out.index("output of job")
    assert out[at + 1 :] == [
        "line 25",
        "line 26",
        "line 27",
        "line 28",
        "line 29",
        "clipboard",
        "cleared",
        "?name.txt",
        "red and    done",
        " 60%|######",  # the newest snapshot; the one it replaced is left out
    ]
    assert len(out) - at - 1 == MAX_LOG_LINES


def test_the_run_asked_for_is_shown_even_before_it_has_output(tmp_path: Path) -> None:
    RunDir(tmp_path, "job").metrics(1, loss=1.0)
    out = frame_text(view_of(tmp_path, log_run="job"))
    assert out[-1] == "output of job  (nothing yet)"
    out = frame_text(view_of(tmp_path, log_run="not-there-yet"))
    assert out[-1] == "output of not-there-yet  (nothing yet)"
    assert not [x for x in frame_text(view_of(tmp_path)) if x.startswith("output of")]


def test_a_short_terminal_gives_the_output_a_quarter_of_its_height(tmp_path: Path) -> None:
    job = RunDir(tmp_path, "job")
    job.metrics(1, loss=1.0)
    (job.path / LOG_FILE).write_bytes(b"".join(b"line %d\n" % i for i in range(30)))
    out = frame_text(view_of(tmp_path), height=16)
    assert len(out) <= 16
    at = out.index("output of job")
    assert out[at + 1 :] == ["line 27", "line 28", "line 29"]  # 16 // 4 - 1 lines


def test_a_stop_event_ends_the_live_view_after_one_more_frame(tmp_path: Path) -> None:
    job = RunDir(tmp_path, "job")
    job.metrics(1, loss=1.0)
    view = view_of(tmp_path, log_run="job")
    stop = threading.Event()
    console = Console(file=StringIO(), width=100, color_system=None)
    frames: list[int] = []

    def ended() -> None:  # the job ends while the view waits between frames
        (job.path / LOG_FILE).write_bytes(b"the job's last words\n")
        job.end("completed", step=1)
        stop.set()

    timer = threading.Timer(0.3, ended)
    timer.start()
    original = view.snapshot

    def counted():  # type: ignore[no-untyped-def]
        frames.append(1)
        return original()

    view.snapshot = counted  # type: ignore[method-assign]
    assert run_live(view, console, 60.0, screen=False, stop=stop) == 0
    timer.join()
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert len(frames) == 2  # the first, and the one after the stop
    assert "completed" in out and out.rstrip().endswith("the job's last words")
