"""The job's output: line records, output.log's cap and rotation, and the tee on real pipes with a
real tailer reading while it writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from mudpuppy_monitor.launch.output import (
    LOG_FILE,
    ROTATED_FILE,
    LineSplitter,
    OutputLog,
    Tee,
)


def feed_all(splitter: LineSplitter, *chunks: bytes, t: float = 0.0) -> bytes:
    return b"".join(splitter.feed(c, t) for c in chunks)


def test_whole_lines_only_and_the_rest_held_until_its_newline() -> None:
    s = LineSplitter()
    assert s.feed(b"epoch 1\nepo", 0) == b"epoch 1\n"
    assert s.feed(b"ch 2", 0) == b""
    assert s.feed(b"\n", 0) == b"epoch 2\n"
    assert s.feed(b"no newline at the end", 0) == b""
    assert s.flush() == b"no newline at the end\n"
    assert s.flush() == b""


def test_crlf_ends_a_line_even_split_between_reads() -> None:
    s = LineSplitter()
    assert feed_all(s, b"a\r\nb\r", b"\nc\r\n") == b"a\nb\nc\n"


def test_a_redrawn_line_keeps_what_follows_the_carriage_return() -> None:
    s = LineSplitter(snapshot_every_s=1.0)
    bar = [f"\r{p:3d}%|{'#' * (p // 10):<10}|".encode() for p in range(0, 101, 10)]
    # all within one second: one snapshot (the first redraw), then the final state as a line
    out = feed_all(s, *bar, b"\n", t=5.0)
    assert out == b"  0%|          |\r\n100%|##########|\n"


def test_a_long_redraw_is_snapshotted_at_most_once_a_second() -> None:
    s = LineSplitter(snapshot_every_s=1.0)
    out = b""
    for i in range(13):  # a redraw every 0.25 s for 3 s
        out += s.feed(f"\rstep {i}".encode(), i * 0.25)
    out += s.feed(b"\n", 3.0)
    # a redraw completes the line before it: snapshots at 0.25 s, 1.25 s, 2.25 s
    assert out == b"step 0\r\nstep 4\r\nstep 8\r\nstep 12\n"


def test_a_huge_line_becomes_records_of_at_most_64_kib_on_character_boundaries() -> None:
    s = LineSplitter(max_record=10)
    out = s.feed("ab€€€€cd".encode() + b"\n", 0)  # € is 3 bytes
    records = out.split(b"\n")[:-1]
    assert [r.decode() for r in records] == ["ab€€", "€€cd"]
    assert all(len(r) <= 10 for r in records)
    two_mb = b"x" * (2 << 20)
    big = LineSplitter().feed(two_mb + b"\n", 0)
    assert [len(r) for r in big.split(b"\n")[:-1]] == [65536] * 32


def test_output_log_rotates_once_at_the_cap(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, max_bytes=100)
    for i in range(30):
        log.write(f"line {i:02d} {'.' * 11}\n".encode())  # 20 bytes: 5 fit in 100
    log.close()
    current = (tmp_path / LOG_FILE).read_text().splitlines()
    rotated = (tmp_path / ROTATED_FILE).read_text().splitlines()
    assert [line.split()[1] for line in rotated] == ["20", "21", "22", "23", "24"]
    assert [line.split()[1] for line in current] == ["25", "26", "27", "28", "29"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_FILE, ROTATED_FILE]


def test_a_torn_last_line_from_an_earlier_writer_stays_alone(tmp_path: Path) -> None:
    (tmp_path / LOG_FILE).write_bytes(b"whole\ntorn hal")
    log = OutputLog(tmp_path)
    log.write(b"next\n")
    log.close()
    assert (tmp_path / LOG_FILE).read_bytes() == b"whole\ntorn hal\nnext\n"


def test_move_to_appends_to_the_runs_log_and_continues_there(tmp_path: Path) -> None:
    pending, run = tmp_path / "pending", tmp_path / "run"
    pending.mkdir()
    run.mkdir()
    (run / LOG_FILE).write_bytes(b"first attempt\n")
    log = OutputLog(pending, max_bytes=1 << 20)
    log.write(b"before the trainer\n")
    log.move_to(run)
    log.write(b"after\n")
    log.close()
    assert (run / LOG_FILE).read_bytes() == b"first attempt\nbefore the trainer\nafter\n"
    assert list(pending.iterdir()) == []


def test_an_unwritable_directory_warns_once_and_drops(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    log = OutputLog(tmp_path / "missing", clock=lambda: 0.0)
    log.write(b"a\n")
    log.write(b"b\n")
    assert log.dropped_bytes == 4
    assert capsys.readouterr().err.count("cannot write") == 1


NOISY_JOB = r"""
import os, sys, time
out = sys.stdout.buffer
ESC = "\x1b"
for i in range(10_000):
    line = f"{ESC}[32mINFO{ESC}[0m step {i} loss {1 / (i + 1):.5f}\n".encode()
    if i % 997 == 0:  # a line in two writes, with a pause between
        out.write(line[:7]); out.flush(); time.sleep(0.02); out.write(line[7:])
    else:
        out.write(line)
    if i == 5000:
        out.write(b"x" * (2 << 20) + b"\n")
    out.flush()
for p in range(0, 101, 5):
    sys.stderr.write(f"\r{p}%"); sys.stderr.flush(); time.sleep(0.01)
sys.stderr.write("\n")
"""


def test_a_tailer_reading_while_the_tee_writes_never_sees_a_torn_line(tmp_path: Path) -> None:
    job = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(NOISY_JOB)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert job.stdout is not None and job.stderr is not None
    term_r, term_w = os.pipe()  # stands for the terminal
    terminal = bytearray()
    drain = threading.Thread(target=lambda: _read_all(term_r, terminal))
    drain.start()
    log = OutputLog(tmp_path)
    tee = Tee([(job.stdout.fileno(), term_w), (job.stderr.fileno(), None)], log)
    seen: list[bytes] = []
    done = threading.Event()
    tailer = threading.Thread(target=_tail, args=(tmp_path / LOG_FILE, seen, done))
    tailer.start()
    tee.start()
    job.wait(120)
    tee.finish(5.0)
    log.close()
    done.set()
    tailer.join(30)
    os.close(term_w)
    drain.join(30)
    expected_steps = [f"\x1b[32mINFO\x1b[0m step {i} loss {1 / (i + 1):.5f}" for i in range(10_000)]
    text = [r.decode() for r in seen]
    steps = [r for r in text if "step" in r]
    assert steps == expected_steps  # every line whole, in order, read by a live tailer
    assert [len(r) for r in text if r.startswith("x")] == [65536] * 32
    assert text[-1] == "100%"  # the redrawn progress line's final state
    assert b"\r\n" not in (tmp_path / LOG_FILE).read_bytes().replace(b"%\r\n", b"")
    # the terminal got the stdout bytes exactly as written
    assert terminal.count(b"\n") == 10_001
    assert terminal.startswith(b"\x1b[32mINFO\x1b[0m step 0 loss 1.00000\n")


def _read_all(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 1 << 16):
        into += chunk
    os.close(fd)


def _tail(path: Path, seen: list[bytes], done: threading.Event) -> None:
    """A reader as docs/run-format.md asks: consume up to the last newline, hold the rest."""
    held = b""
    offset = 0
    while True:
        finished = done.is_set()
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        held += data
        *lines, held = held.split(b"\n")
        seen.extend(line.removesuffix(b"\r") for line in lines)
        if finished:
            assert held == b""
            return
        done.wait(0.005)
