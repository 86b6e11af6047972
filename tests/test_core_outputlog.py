"""The daemon's side of output.log: written by the launcher's own writer (LineSplitter and
OutputLog), read by the Monitor. Whole lines only, bounded memory, rotation followed, a traceback
at the end as the error of a run that has none."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mudpuppy_callback import RunWriter

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core import outputlog as ol
from mudpuppy_monitor.launch.output import LOG_FILE, ROTATED_FILE, LineSplitter, OutputLog
from tests.serverutil import RunDir

RED, RESET = "\x1b[31m", "\x1b[0m"


def launched_run(root: Path, name: str = "job") -> Path:
    """A run directory as `mudpuppy-monitor run` leaves it before the Trainer starts."""
    writer = RunWriter(str(root), name)
    return Path(writer.dir)


def tee(log: OutputLog, data: bytes, splitter: LineSplitter | None = None) -> None:
    log.write((splitter or LineSplitter()).feed(data, 0.0))


def test_the_writers_file_names_are_the_readers() -> None:
    assert (ol.LOG_FILE, ol.ROTATED_FILE) == (LOG_FILE, ROTATED_FILE)


def test_ten_thousand_coloured_lines_and_a_2_mb_line_are_held_bounded(tmp_path: Path) -> None:
    run = launched_run(tmp_path)
    log = OutputLog(run)
    splitter = LineSplitter()
    mon = Monitor(tmp_path)
    mon.refresh()  # attached before the job prints: every line is read as it comes
    text = "".join(f"{RED}step {i}{RESET} loss={i / 7:.4f}\n" for i in range(10_000))
    for k in range(0, len(text), 50_000):  # in pieces, reads in between
        tee(log, text[k : k + 50_000].encode(), splitter)
        mon.refresh()
    tee(log, b"<" + b"x" * ((2 << 20) - 2) + b">\n", splitter)  # 2 MiB exactly
    tee(log, b"after the long line\n", splitter)
    log.close()
    mon.refresh()
    got = mon.log_tail("job", 50)
    assert got is not None
    assert got["lines"][-1] == "after the long line"
    # the 2 MiB line arrived as 32 records of 64 KiB: each is held cut to 4 KiB, marked
    long = got["lines"][-33:-1]
    assert len(long) == 32 and long[0].startswith("<xxx")
    assert all(x.endswith(f" … [{65536 - ol.LINE_MAX_BYTES:,} more bytes]") for x in long)
    assert got["end"] == 10_000 + 32 + 1 and got["start"] == got["end"] - 50
    held = mon.log_tail("job", 10**6)
    assert held["first"] == held["start"] and len(held["lines"]) <= ol.KEEP_LINES
    assert sum(len(x) for x in held["lines"]) <= ol.KEEP_CHARS
    # the coloured lines come as the job wrote them (viewers strip or render the codes)
    coloured = [x for x in held["lines"] if x.startswith(RED)]
    assert coloured[-1] == f"{RED}step 9999{RESET} loss={9999 / 7:.4f}"
    assert mon.log_since("job", held["end"] - 2) == (
        mon.generation("job"),
        held["end"] - 2,
        held["lines"][-2:],
    )


def test_a_line_is_shown_only_once_its_newline_is_written(tmp_path: Path) -> None:
    run = launched_run(tmp_path)
    mon = Monitor(tmp_path)
    with open(run / LOG_FILE, "ab") as f:
        f.write(b"one\ntw")
        f.flush()
        mon.refresh()
        assert mon.log_tail("job", 10)["lines"] == ["one"]
        f.write(b"o\n")
        f.flush()
        mon.refresh()
    assert mon.log_tail("job", 10)["lines"] == ["one", "two"]


def test_a_rotation_between_reads_loses_no_line(tmp_path: Path) -> None:
    run = launched_run(tmp_path)
    log = OutputLog(run, max_bytes=200)
    mon = Monitor(tmp_path)
    sent = []
    for i in range(40):
        line = f"line {i:02d} {'.' * 11}"  # 20 bytes with the newline: 10 per file
        sent.append(line)
        tee(log, (line + "\n").encode())
        if i % 7 == 0:  # the reader misses some rotations' moments entirely
            mon.refresh()
    log.close()
    mon.refresh()
    assert (run / ROTATED_FILE).exists()
    assert mon.log_tail("job", 100)["lines"] == sent


def test_attaching_to_a_long_log_reads_only_its_end(tmp_path: Path) -> None:
    run = launched_run(tmp_path)
    line = b"." * 99 + b"\n"
    (run / LOG_FILE).write_bytes(line * 50_000 + b"the last line\n")  # 5 MB
    mon = Monitor(tmp_path)
    mon.refresh()
    got = mon.log_tail("job", 10**6)
    assert len(got["lines"]) == ol.KEEP_LINES and got["first"] > 0
    assert got["lines"][-1] == "the last line"
    assert set(got["lines"][:-1]) == {"." * 99}


def test_more_than_a_read_window_at_once_is_skipped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ol, "READ_WINDOW_BYTES", 1000)
    run = launched_run(tmp_path)
    mon = Monitor(tmp_path)
    with open(run / LOG_FILE, "ab") as f:
        f.write(b"first\n")
        f.flush()
        mon.refresh()
        f.write(b"".join(b"%09d\n" % i for i in range(300)))  # 3,000 bytes at once
    mon.refresh()
    lines = mon.log_tail("job", 1000)["lines"]
    assert lines[0] == "first"
    assert (
        lines[1] == "[mudpuppy-monitor: 2,000 bytes of output not read; only the last part is kept]"
    )
    # the window starts inside a line: that piece is dropped, the whole lines after it kept
    assert lines[2:] == [f"{i:09d}" for i in range(201, 300)]


def test_progress_bar_snapshots_keep_their_carriage_return(tmp_path: Path) -> None:
    run = launched_run(tmp_path)
    (run / LOG_FILE).write_bytes(b" 10%|#   |\r\n 20%|##  |\r\n100%|####|\ndone\n")
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.log_tail("job", 10)["lines"] == [
        " 10%|#   |\r",
        " 20%|##  |\r",
        "100%|####|",
        "done",
    ]


def test_a_traceback_at_the_end_is_the_error_of_a_crashed_run_without_one(
    tmp_path: Path,
) -> None:
    dead = os.getpid() + 10**6
    job = RunDir(tmp_path, "job", pid=dead)  # its process died: no end line
    job.metrics(1, loss=1.0)
    run = job.path
    (run / LOG_FILE).write_bytes(
        b"step 1\n[rank0]: Traceback (most recent call last):\n"
        b'[rank0]:   File "train.py", line 3, in <module>\n'
        b"[rank0]: torch.OutOfMemoryError: CUDA out of memory\n"
    )
    mon = Monitor(tmp_path, host=socket.gethostname(), pid_alive=lambda pid: pid != dead)
    mon.refresh()
    s = mon.summary("job")
    assert (s.status, s.error) == ("crashed", "torch.OutOfMemoryError: CUDA out of memory")
    # an error of the run's own wins; a run that did not fail shows none from its output
    RunWriter(str(tmp_path), "own").close("failed", error="ValueError: mine")
    (tmp_path / "own" / LOG_FILE).write_bytes(b"Traceback (most recent call last):\nKeyError: x\n")
    RunWriter(str(tmp_path), "fine").close("completed")
    (tmp_path / "fine" / LOG_FILE).write_bytes(b"Traceback (most recent call last):\nKeyError: x\n")
    mon.refresh()
    assert mon.summary("own").error == "ValueError: mine"
    assert mon.summary("fine").error is None


def test_an_output_log_that_is_not_a_file_is_an_error_of_the_run_not_of_the_reader(
    tmp_path: Path,
) -> None:
    run = launched_run(tmp_path)
    os.mkfifo(run / LOG_FILE)  # opened without O_NONBLOCK this would block the reader forever
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.detail("job")["errors"] == {LOG_FILE: f"{LOG_FILE}: not a regular file"}
    assert mon.log_tail("job", 5)["lines"] == []
