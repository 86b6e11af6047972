"""FileTail on real files: offsets, partial lines, chunk boundaries, over-long lines, resets."""

from __future__ import annotations

import os
from pathlib import Path

from mudpuppy_monitor.core.tail import CHUNK_BYTES, FileTail


def _lines(res) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [ln for block in res.blocks for ln in block.split(b"\n")[:-1]]


def test_partial_line_is_held_until_newline(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"one\ntw")
    tail = FileTail(str(p))
    assert _lines(tail.read()) == [b"one"]
    assert tail.partial == b"tw" and tail.offset == 6
    assert _lines(tail.read()) == []
    with open(p, "ab") as f:
        f.write(b"o\nthree")
    assert _lines(tail.read()) == [b"two"]
    with open(p, "ab") as f:
        f.write(b"\n")
    assert _lines(tail.read()) == [b"three"]


def test_many_chunks_lose_nothing(tmp_path: Path) -> None:
    p = tmp_path / "f"
    body = b"".join(b"line %07d %s\n" % (i, b"x" * (i % 97)) for i in range(60_000))
    assert len(body) > 3 * CHUNK_BYTES
    p.write_bytes(body)
    tail = FileTail(str(p))
    res = tail.read()
    assert len(res.blocks) >= 3
    assert all(len(b) <= 2 * CHUNK_BYTES for b in res.blocks)  # never the whole file at once
    assert b"".join(res.blocks) == body


def test_budget_splits_a_big_read(tmp_path: Path) -> None:
    p = tmp_path / "f"
    body = b"".join(b"%d\n" % i for i in range(1_000_000))
    p.write_bytes(body)
    tail = FileTail(str(p))
    first = tail.read(max_bytes=1)
    assert len(first.blocks) == 1 and tail.offset == CHUNK_BYTES
    rest = tail.read()
    assert b"".join(first.blocks + rest.blocks) == body


def test_overlong_line_is_skipped_while_streaming(tmp_path: Path) -> None:
    p = tmp_path / "f"
    tail = FileTail(str(p), max_line=1000)
    p.write_bytes(b"ok1\n" + b"x" * 600)
    assert _lines(tail.read()) == [b"ok1"]
    with open(p, "ab") as f:
        f.write(b"x" * 600)  # now over the limit without a newline: dropped, not held
    res = tail.read()
    assert res.skipped == 1 and tail.partial == b"" and tail.skipping
    with open(p, "ab") as f:
        f.write(b"x" * 5000 + b"\nok2\n")
    res = tail.read()
    assert _lines(res) == [b"ok2"] and res.skipped == 0 and not tail.skipping


def test_overlong_line_inside_one_chunk(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"a\n" + b"y" * 3000 + b"\nb\n")
    res = FileTail(str(p), max_line=1000).read()
    assert _lines(res) == [b"a", b"b"] and res.skipped == 1


def test_truncation_and_replacement_reset(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"a\nb\n")
    tail = FileTail(str(p))
    tail.read()
    p.write_bytes(b"c\n")  # truncated in place
    res = tail.read()
    assert res.reset and _lines(res) == [b"c"]  # after a reset: the new file from its start
    new = tmp_path / "g"
    new.write_bytes(b"d\ne\nf\n")  # longer than before: only the inode tells
    os.replace(new, p)
    res = tail.read()
    assert res.reset and _lines(res) == [b"d", b"e", b"f"]
    assert _lines(tail.read()) == []
    p.unlink()
    assert tail.read().reset
    assert not tail.read().reset  # gone stays gone: one reset


def test_directory_in_place_of_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    res = FileTail(str(tmp_path / "f")).read()
    assert res.error and "not a regular file" in res.error
