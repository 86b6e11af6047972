"""A corpus of bad input: the reader keeps going, keeps every good line, counts every bad one."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from mudpuppy_callback import FormatError, UnknownKind, decode_line, encode_line

from mudpuppy_monitor.core import Monitor

T0 = 1_700_000_000.0


def ev(seq: int, kind: str, **fields: object) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **fields})


def raw(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def metrics(seq: int, step: int, loss: float) -> bytes:
    return ev(seq, "metrics", step=step, values={"loss": loss})


M = {"v": 1, "seq": 0, "t": T0, "kind": "metrics", "step": 1}

# each entry: one bad line (newline included); the kinds of damage a real file can hold
BAD: list[tuple[str, bytes]] = [
    ("empty line", b"\n"),
    ("blank line", b"   \t \n"),
    ("garbage bytes", b"\x00\xff\xfe\x9c garbage \x01\n"),
    ("invalid utf-8 in a string", b'{"v":1,"seq":0,"t":1.0,"kind":"start","x":"\xff\xfe"}\n'),
    ("NUL bytes", b"\x00" * 40 + b"\n"),
    ("cut JSON", b'{"v":1,"seq":3,"t":1.0,"kind":"metrics","step":3,"values":{"lo\n'),
    ("lone brace", b"}\n"),
    ("JSON array", b'[{"v":1,"seq":0,"t":1.0,"kind":"start"}]\n'),
    ("JSON string", b'"metrics"\n'),
    ("JSON number", b"42\n"),
    ("JSON null", b"null\n"),
    (
        "deep nesting",
        b'{"v":1,"seq":0,"t":1,"kind":"start","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    ),
    ("version 2", raw({**M, "v": 2, "values": {"loss": 1.0}})),
    ("no version", raw({k: v for k, v in {**M, "values": {"loss": 1.0}}.items() if k != "v"})),
    ("kind a number", raw({**M, "kind": 3, "values": {"loss": 1.0}})),
    ("kind null", raw({**M, "kind": None, "values": {"loss": 1.0}})),
    ("unknown kind without seq", raw({"v": 1, "t": T0, "kind": "weird"})),
    ("unknown kind with t a word", raw({"v": 1, "seq": 0, "t": "later", "kind": "weird"})),
    ("unknown kind of version 2", raw({"v": 2, "seq": 0, "t": T0, "kind": "weird"})),
    ("no kind", raw({k: v for k, v in {**M, "values": {"loss": 1.0}}.items() if k != "kind"})),
    ("seq missing", raw({k: v for k, v in {**M, "values": {"loss": 1.0}}.items() if k != "seq"})),
    ("seq a string", raw({**M, "seq": "7", "values": {"loss": 1.0}})),
    ("t a word", raw({**M, "t": "yesterday", "values": {"loss": 1.0}})),
    ("t NaN", raw({**M, "t": "NaN", "values": {"loss": 1.0}})),
    ("t missing", raw({k: v for k, v in {**M, "values": {"loss": 1.0}}.items() if k != "t"})),
    ("step a string", raw({**M, "step": "5", "values": {"loss": 1.0}})),
    ("step fractional", raw({**M, "step": 5.5, "values": {"loss": 1.0}})),
    ("step negative", raw({**M, "step": -1, "values": {"loss": 1.0}})),
    ("step a boolean", raw({**M, "step": True, "values": {"loss": 1.0}})),
    ("step missing", raw({k: v for k, v in {**M, "values": {"loss": 1.0}}.items() if k != "step"})),
    ("values missing", raw(M)),
    ("values a list", raw({**M, "values": [1.0, 2.0]})),
    ("lora layers not an object", raw({**M, "kind": "lora", "layers": ["q_proj"]})),
    (
        "end with unknown status",
        raw({"v": 1, "seq": 0, "t": T0, "kind": "end", "status": "exploded"}),
    ),
    ("checkpoint path a number", raw({**M, "kind": "checkpoint", "path": 12})),
    ("progress without step", raw({"v": 1, "seq": 0, "t": T0, "kind": "progress"})),
    ("2 MiB line", b'{"v":1,"seq":0,"t":1,"kind":"start","pad":"' + b"x" * (2 << 20) + b'"}\n'),
]

# lines of kinds added to format v1 after this reader: a valid envelope (v, seq, t, a string
# kind), anything else; skipped, not bad, whatever they carry (docs/run-format.md, Compatibility)
SKIPPED: list[tuple[str, bytes]] = [
    ("a new kind", raw({"v": 1, "seq": 5, "t": T0, "kind": "weird", "values": {"loss": 1.0}})),
    ("a new kind with a bad step", raw({"v": 1, "seq": 5, "t": T0, "kind": "weird", "step": -4})),
    ("a new kind with a nested payload", raw({**M, "kind": "log", "lines": [{"a": [1, None]}]})),
    ("a kind that differs by case", raw({**M, "kind": "Metrics", "values": {"loss": 1.0}})),
    ("an empty kind", raw({**M, "kind": ""})),
    ("a 200-character kind", raw({**M, "kind": "k" * 200})),
]

# good lines that look odd; each is a metrics line with one loss value (or none, noted)
GOOD_ODD: list[tuple[str, bytes, float | None]] = [
    (
        "bare NaN token",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":NaN}}\n',
        float("nan"),
    ),
    (
        "bare Infinity token",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":Infinity}}\n',
        float("inf"),
    ),
    (
        "NaN string",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":"NaN"}}\n',
        float("nan"),
    ),
    (
        "-Infinity string",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":"-Infinity"}}\n',
        float("-inf"),
    ),
    (
        "BOM",
        b'\xef\xbb\xbf{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":0.5}}\n',
        0.5,
    ),
    ("CRLF", b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":0.25}}\r\n', 0.25),
    (
        "integer step as float",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1.0,"values":{"loss":0.75}}\n',
        0.75,
    ),
    (
        "integer t",
        b'{"v":1,"seq":1,"t":2,"kind":"metrics","step":1,"values":{"loss":0.125}}\n',
        0.125,
    ),
    (
        "a non-number value beside",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":0.5,"note":"hi","flag":true,"none":null}}\n',
        0.5,
    ),
    (
        "only non-number values",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"note":"hi"}}\n',
        None,
    ),
    (
        "unknown extra fields",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":0.5},"extra":{"a":[1,2]}}\n',
        0.5,
    ),
    (
        "900 KiB line",
        b'{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":0.5},"pad":"'
        + b"y" * (900 << 10)
        + b'"}\n',
        0.5,
    ),
]


def test_corpus_agrees_with_the_reference_decoder() -> None:
    """The corpus means what it says: decode_line refuses every BAD line and takes every good one."""
    assert len(BAD) >= 30
    for name, line in BAD:
        with pytest.raises(FormatError):
            decode_line(line)
        assert name
    for _, line, _ in GOOD_ODD:
        decode_line(line)
    for _, line in SKIPPED:
        with pytest.raises(UnknownKind):
            decode_line(line)
    for _, line in BAD:
        with pytest.raises(FormatError) as caught:
            decode_line(line)
        assert not isinstance(caught.value, UnknownKind)


def _corpus() -> tuple[bytes, list[tuple[int, float | None]], int]:
    """The file: good lines (with steps 0, 1, 2 ... and the odd ones) between the bad ones."""
    parts = [ev(0, "start", run_id="x")]
    expect: list[tuple[int, float | None]] = []
    step = 0
    for i, (_, bad) in enumerate(BAD):
        parts.append(metrics(i + 1, step, 1.0 + step))
        expect.append((step, 1.0 + step))
        step += 1
        parts.append(bad)
    for _, line in SKIPPED:
        parts.append(line)
    for _, line, loss in GOOD_ODD:
        obj_line = line.replace(b'"step":1,', f'"step":{step},'.encode()).replace(
            b'"step":1.0,', f'"step":{step}.0,'.encode()
        )
        parts.append(obj_line)
        if loss is not None:
            expect.append((step, loss))
        step += 1
    # duplicate and decreasing steps are data, not errors
    for s in (step - 1, step - 1, 3):
        parts.append(metrics(1000 + s, s, 9.0))
        expect.append((s, 9.0))
    return b"".join(parts), expect, len(BAD)


def _check(mon: Monitor, expect: list[tuple[int, float | None]], bad: int) -> None:
    s = mon.summary("run")
    assert s is not None
    assert s.bad_lines == bad
    got = mon.series("run", ["loss"], points=10**9)["loss"]
    assert got["count"] == len(expect)
    assert got["x"] == [st for st, _ in expect]
    assert [repr(y) for y in got["y"]] == [repr(v) for _, v in expect]
    assert s.nonfinite == 4
    detail = mon.detail("run")
    assert detail is not None
    assert detail["skipped_lines"] == len(SKIPPED)
    assert detail["skipped_kinds"] == {
        "weird": 2,
        "log": 1,
        "Metrics": 1,
        "": 1,
        "k" * 64: 1,
    }


def test_corpus_in_one_read(tmp_path: Path) -> None:
    data, expect, bad = _corpus()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.jsonl").write_bytes(data)
    mon = Monitor(tmp_path, clock=lambda: T0)
    mon.refresh()
    _check(mon, expect, bad)


def test_corpus_arriving_in_random_pieces(tmp_path: Path) -> None:
    data, expect, bad = _corpus()
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "events.jsonl"
    path.write_bytes(b"")
    mon = Monitor(tmp_path, clock=lambda: T0)
    rng = random.Random(7)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 3000, 70_000, 700_000])
        with open(path, "ab") as f:
            f.write(data[pos : pos + n])
        pos += n
        mon.refresh()
    _check(mon, expect, bad)


def _write_run(root: Path, name: str, losses: list[float]) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    body = b"".join(metrics(i, i, x) for i, x in enumerate(losses))
    (d / "events.jsonl").write_bytes(body)
    return d


def test_truncated_file_resets_the_run(tmp_path: Path) -> None:
    d = _write_run(tmp_path, "run", [5.0, 4.0, 3.0])
    mon = Monitor(tmp_path)
    mon.refresh()
    g0 = mon.generation("run")
    (d / "events.jsonl").write_bytes(metrics(0, 0, 7.0))  # shorter than what was read
    assert mon.refresh() == {"run"}
    assert mon.generation("run") != g0
    assert mon.series("run", ["loss"])["loss"]["y"] == [7.0]
    gen, grown = mon.points_since("run", {})
    assert gen == mon.generation("run") and grown["loss"]["y"] == [7.0]


def test_replaced_file_resets_the_run(tmp_path: Path) -> None:
    d = _write_run(tmp_path, "run", [5.0, 4.0])
    mon = Monitor(tmp_path)
    mon.refresh()
    g0 = mon.generation("run")
    tmp = d / "events.jsonl.new"
    tmp.write_bytes(b"".join(metrics(i, i, 1.0) for i in range(5)))
    os.replace(tmp, d / "events.jsonl")  # same size or longer: only the inode tells
    assert mon.refresh() == {"run"}
    assert mon.generation("run") != g0
    assert mon.series("run", ["loss"])["loss"]["y"] == [1.0] * 5


def test_run_deleted_and_recreated(tmp_path: Path) -> None:
    _write_run(tmp_path, "a/run", [5.0, 4.0])
    mon = Monitor(tmp_path)
    assert mon.refresh() == {"a/run"}
    g0 = mon.generation("a/run")
    shutil.rmtree(tmp_path / "a")
    assert mon.refresh() == {"a/run"}
    assert mon.summary("a/run") is None and mon.summaries() == []
    assert mon.points_since("a/run", {}) == (-1, {})
    _write_run(tmp_path, "a/run", [9.0])
    assert mon.refresh() == {"a/run"}
    assert mon.generation("a/run") != g0
    assert mon.series("a/run", ["loss"])["loss"]["y"] == [9.0]


def test_events_file_deleted_resets(tmp_path: Path) -> None:
    d = _write_run(tmp_path, "run", [5.0, 4.0])
    (d / "meta.json").write_text('{"name": "kept"}')
    mon = Monitor(tmp_path)
    mon.refresh()
    (d / "events.jsonl").unlink()
    mon.refresh()
    assert mon.counts("run") == {}
    assert mon.summary("run").name == "kept"  # type: ignore[union-attr]


def test_symlinks_loop_and_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    _write_run(outside, "secret", [1.0])
    _write_run(root, "real", [2.0, 3.0])
    (root / "loop").mkdir()
    os.symlink(root / "loop", root / "loop" / "again")  # a directory loop
    os.symlink(outside / "secret", root / "escape")  # a run outside the root
    (root / "leak").mkdir()
    os.symlink(outside / "secret" / "events.jsonl", root / "leak" / "events.jsonl")
    (root / "self").mkdir()
    os.symlink(root / "self" / "events.jsonl", root / "self" / "events.jsonl")  # ELOOP
    (root / "inside").mkdir()
    os.symlink(root / "real" / "events.jsonl", root / "inside" / "events.jsonl")
    mon = Monitor(root)
    mon.refresh()
    assert set(mon.run_ids()) == {"real", "leak", "self", "inside"}
    assert mon.counts("leak") == {}
    assert "out of the root" in (mon.summary("leak").error or "")  # type: ignore[union-attr]
    assert mon.counts("self") == {}
    assert mon.summary("self").error  # type: ignore[union-attr]
    assert mon.series("inside", ["loss"])["loss"]["y"] == [2.0, 3.0]


def test_meta_json_garbage_is_reported_not_fatal(tmp_path: Path) -> None:
    d = _write_run(tmp_path, "run", [1.0])
    (d / "meta.json").write_bytes(b"{not json")
    mon = Monitor(tmp_path)
    mon.refresh()
    s = mon.summary("run")
    assert s is not None and s.error and "meta.json" in s.error
    (d / "meta.json").write_text('{"name": "fixed", "max_steps": 10}')
    mon.refresh()
    s = mon.summary("run")
    assert s is not None and s.error is None and s.name == "fixed" and s.max_steps == 10


def _read_as_user(root: Path) -> dict:
    """Refresh a Monitor over `root` in a forked child that, under root, drops to `nobody`
    (root reads every file regardless of its mode); the answer comes back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            mon = Monitor(root)
            mon.refresh()
            got = {s.id: [s.bad_lines, s.error, mon.counts(s.id)] for s in mon.summaries()}
            os.write(w, json.dumps(got).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return json.loads(data)


def test_permission_denied(tmp_path: Path) -> None:
    """An unreadable events file and an unreadable directory: reported, the rest still read."""
    base = Path(tempfile.mkdtemp(prefix="mudpuppy-perm-"))
    try:
        os.chmod(base, 0o755)
        _write_run(base, "ok", [1.0, 2.0])
        d = _write_run(base, "locked", [1.0])
        os.chmod(d / "events.jsonl", 0o000)
        _write_run(base, "hidden/run", [1.0])
        os.chmod(base / "hidden", 0o000)
        for p in (base / "ok", base / "locked"):
            os.chmod(p, 0o755)
        got = _read_as_user(base)
        assert set(got) == {"ok", "locked"}
        assert got["ok"] == [0, None, {"loss": 2, "steps_per_s": 1}]
        assert got["locked"][2] == {}
        assert "Permission denied" in got["locked"][1]
    finally:
        for p in (base / "hidden", base / "locked" / "events.jsonl"):
            os.chmod(p, 0o755)
        shutil.rmtree(base)
