"""Input that must never stop the reader: steps beyond int64, numbers no float holds, a reader
that raises. Each case is read next to good lines that must all arrive."""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from mudpuppy_callback import FormatError, decode_line, encode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.sources.native import NativeSource

T0 = 1_700_000_000.0


def ev(seq: int, kind: str, **fields: object) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **fields})


def good(seq: int, step: int, loss: float) -> bytes:
    return ev(seq, "metrics", step=step, values={"loss": loss})


def raw(text: str) -> bytes:
    return text.encode() + b"\n"


HUGE = "1" + "0" * 400  # 10**400: no float holds it
# a step no int64 column holds, in every kind that carries one
BAD_STEPS = [
    raw('{"v":1,"seq":1,"t":1.0,"kind":"metrics","step":9223372036854775808,"values":{"loss":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"metrics","step":18446744073709551615,"values":{"a":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"metrics","step":1e300,"values":{"loss":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"metrics","step":' + HUGE + ',"values":{"loss":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"metrics","step":-9223372036854775809,"values":{"a":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"eval","step":9223372036854775808,"values":{"loss":1}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"progress","step":1e300}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"lora","step":1e300,"layers":{"q":{"A":1.0}}}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"checkpoint","step":9223372036854775808,"path":"c"}'),
    raw('{"v":1,"seq":1,"t":1.0,"kind":"end","step":1e300,"status":"completed"}'),
]


def _native_run(root: Path, lines: list[bytes], name: str = "run") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "events.jsonl").write_bytes(b"".join(lines))
    return d


def test_steps_beyond_int64_are_bad_lines_and_the_rest_is_read(tmp_path: Path) -> None:
    for bad in BAD_STEPS:  # the reference decoder refuses them too: both paths agree
        with pytest.raises(FormatError):
            decode_line(bad)
    lines = [good(0, 0, 1.0)]
    for i, bad in enumerate(BAD_STEPS):
        lines += [bad, good(i + 1, i + 1, 2.0 + i)]
    _native_run(tmp_path, lines)
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    assert mon.refresh() == {"run"}
    s = mon.summary("run")
    assert s is not None and s.bad_lines == len(BAD_STEPS)
    assert s.status == "running" and s.error is None
    got = mon.series("run", ["loss"])["loss"]
    assert got["x"] == list(range(len(BAD_STEPS) + 1))
    assert got["y"] == [1.0] + [2.0 + i for i in range(len(BAD_STEPS))]
    assert mon.detail("run")["markers"] == []  # type: ignore[index]


def test_a_value_no_float_holds_never_stops_the_reader(tmp_path: Path) -> None:
    """10**400 in values: the same outcome as the reference decoder (+inf, or a bad line)."""
    big = raw('{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":1,"values":{"loss":' + HUGE + "}}")
    neg = raw('{"v":1,"seq":2,"t":1.5,"kind":"metrics","step":2,"values":{"loss":-' + HUGE + "}}")
    _native_run(tmp_path, [good(0, 0, 1.0), big, neg, good(3, 3, 0.5)])
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    mon.refresh()
    expect_x, expect_y, expect_bad = [0], [1.0], 0
    for step, line in ((1, big), (2, neg)):
        try:
            value = decode_line(line)["values"]["loss"]
        except (FormatError, OverflowError):
            expect_bad += 1
        else:
            assert value == (math.inf if step == 1 else -math.inf)
            expect_x.append(step)
            expect_y.append(value)
    got = mon.series("run", ["loss"])["loss"]
    assert got["x"] == expect_x + [3]
    assert got["y"] == expect_y + [0.5]
    assert mon.summary("run").bad_lines == expect_bad  # type: ignore[union-attr]


def test_meta_with_huge_numbers_is_harmless(tmp_path: Path) -> None:
    d = _native_run(tmp_path, [good(0, 0, 1.0)])
    (d / "meta.json").write_text(
        '{"pid": 18446744073709551615, "max_steps": 18446744073709551615, "created": 1e308}'
    )
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    mon.refresh()
    s = mon.summary("run")
    assert s is not None and s.pid is None and s.max_steps is None
    json.dumps(s.to_dict())


def test_llamafactory_huge_steps_are_bad_rows_huge_values_are_infinite(tmp_path: Path) -> None:
    d = tmp_path / "lf"
    d.mkdir()
    rows = [
        '{"current_steps": 1, "total_steps": 10, "loss": 2.0, "elapsed_time": "0:00:01"}',
        '{"current_steps": 9223372036854775808, "total_steps": 10, "loss": 3.0}',
        '{"current_steps": 1e300, "total_steps": 10, "loss": 3.0}',
        '{"current_steps": ' + HUGE + ', "loss": 3.0}',
        '{"current_steps": 2, "total_steps": 10, "loss": ' + HUGE + ', "elapsed_time": "0:00:02"}',
        '{"current_steps": 3, "total_steps": 10, "loss": 1.5, "elapsed_time": "'
        + "9" * 400
        + ' days, 0:00:03"}',
    ]
    (d / "trainer_log.jsonl").write_text("\n".join(rows) + "\n")
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    assert mon.refresh() == {"lf"}
    s = mon.summary("lf")
    assert s is not None and s.bad_lines == 3 and s.step == 3
    got = mon.series("lf", ["loss"])["loss"]
    assert got["x"] == [1, 2, 3]
    assert got["y"] == [2.0, math.inf, 1.5]


def test_trainer_state_with_a_step_beyond_int64(tmp_path: Path) -> None:
    d = tmp_path / "hf"
    d.mkdir()
    state = {
        "global_step": 2,
        "max_steps": 10,
        "log_history": [
            {"step": 1, "loss": 2.0},
            {"step": 1e300, "loss": 9.0},
            {"step": 9223372036854775808, "loss": 9.0},
            {"step": 2, "loss": 1.0},
        ],
    }
    (d / "trainer_state.json").write_text(json.dumps(state))
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    assert mon.refresh() == {"hf"}
    s = mon.summary("hf")
    assert s is not None and s.bad_lines == 2 and s.step == 2
    assert mon.series("hf", ["loss"])["loss"]["y"] == [2.0, 1.0]


def test_a_reader_that_raises_is_recorded_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _native_run(tmp_path, [good(0, 0, 1.0)], "a")
    _native_run(tmp_path, [good(0, 0, 2.0)], "b")
    real_poll = NativeSource.poll

    def poll(self: NativeSource, run, lock):  # type: ignore[no-untyped-def]
        if run.id == "a":
            raise OverflowError("int too large")
        return real_poll(self, run, lock)

    monkeypatch.setattr(NativeSource, "poll", poll)
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    assert mon.refresh() == {"a", "b"}
    assert mon.series("b", ["loss"])["loss"]["y"] == [2.0]
    assert mon.summary("a").error == "reader error (1x): OverflowError: int too large"  # type: ignore[union-attr]
    mon.refresh()
    assert mon.detail("a")["errors"] == {  # type: ignore[index]
        "reader": "reader error (2x): OverflowError: int too large"
    }


def test_watching_survives_a_failing_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass and later passes raise: start() still works, and so does watching."""
    d = _native_run(tmp_path, [good(0, 0, 1.0)])
    mon = Monitor(tmp_path, poll=True, scan_interval_s=0.05, clock=lambda: T0, parallel=False)
    real_full = mon._full_pass
    fails = {"n": 0}

    def full_pass():  # type: ignore[no-untyped-def]
        if fails["n"] < 3:
            fails["n"] += 1
            raise RuntimeError("surprise")
        return real_full()

    monkeypatch.setattr(mon, "_full_pass", full_pass)

    async def main() -> list[float]:
        await mon.start()
        try:
            written = False
            for _ in range(500):
                if mon.counts("run").get("loss") == 2:
                    break
                if not written and mon.counts("run").get("loss") == 1:
                    with open(d / "events.jsonl", "ab") as f:
                        f.write(good(1, 1, 0.5))
                    written = True
                await asyncio.sleep(0.01)
            return mon.series("run", ["loss"]).get("loss", {}).get("y", [])
        finally:
            await mon.stop()

    assert asyncio.run(main()) == [1.0, 0.5]
    assert fails["n"] == 3


def _refresh_within(mon: Monitor, seconds: float = 10.0) -> set[str]:
    """refresh() in a thread: a reader blocked on a FIFO fails the test instead of hanging it."""
    out: list[set[str]] = []
    th = threading.Thread(target=lambda: out.append(mon.refresh()), daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), "refresh() blocked"
    return out[0]


def test_meta_json_symlink_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"name": "SECRET", "pid": 4242, "host": "elsewhere"}')
    d = _native_run(root, [good(0, 0, 1.0)])
    os.symlink(outside / "secret.json", d / "meta.json")
    ok = _native_run(root, [good(0, 0, 1.0)], "inside")
    (root / "shared.json").write_text('{"name": "shared-meta"}')
    os.symlink(root / "shared.json", ok / "meta.json")
    mon = Monitor(root, clock=lambda: T0, parallel=False)
    mon.refresh()
    s = mon.summary("run")
    assert s is not None and s.name == "run" and s.pid is None and s.host is None
    assert s.error == "meta.json: symlink out of the root, not followed"
    assert mon.detail("run")["meta"] == {}  # type: ignore[index]
    assert mon.summary("inside").name == "shared-meta"  # type: ignore[union-attr]


def test_trainer_files_symlinked_out_of_the_root_are_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (outside / "log.jsonl").write_text('{"current_steps": 1, "loss": 7.0}\n')
    (outside / "state.json").write_text('{"log_history": [{"step": 1, "loss": 7.0}]}')
    (root / "lf").mkdir(parents=True)
    os.symlink(outside / "log.jsonl", root / "lf" / "trainer_log.jsonl")
    (root / "hf" / "checkpoint-5").mkdir(parents=True)
    os.symlink(outside / "state.json", root / "hf" / "checkpoint-5" / "trainer_state.json")
    mon = Monitor(root, clock=lambda: T0, parallel=False)
    mon.refresh()
    assert mon.counts("lf") == {} and mon.counts("hf") == {}
    assert mon.summary("lf").error == "trainer_log.jsonl: symlink out of the root, not followed"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name", ["events.jsonl", "meta.json", "trainer_log.jsonl", "trainer_state.json"]
)
def test_a_fifo_in_place_of_a_run_file_does_not_hang_the_reader(tmp_path: Path, name: str) -> None:
    d = tmp_path / "run"
    d.mkdir()
    os.mkfifo(d / name)
    if name == "meta.json":
        (d / "events.jsonl").write_bytes(good(0, 0, 1.0))
    other = _native_run(tmp_path, [good(0, 0, 3.0)], "other")
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    assert _refresh_within(mon) == {"run", "other"}
    assert mon.summary("run").error == f"{name}: not a regular file"  # type: ignore[union-attr]
    assert mon.series("other", ["loss"])["loss"]["y"] == [3.0]
    with open(other / "events.jsonl", "ab") as f:
        f.write(good(1, 1, 2.0))
    assert _refresh_within(mon) == {"other"}


def test_a_first_load_does_not_block_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a new run is being read (not visible yet), queries on other runs answer at once."""
    import mudpuppy_monitor.core.sources.native as native

    _native_run(tmp_path, [good(0, 0, 1.0)], "known")
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    mon.refresh()
    answered: list[list[str]] = []
    real_apply = native.apply_batch

    def apply_batch(run, batch):  # type: ignore[no-untyped-def]
        if run.id == "new":
            th = threading.Thread(target=lambda: answered.append(mon.run_ids_and_names()))
            th.start()
            th.join(5.0)
        real_apply(run, batch)

    mon.run_ids_and_names = lambda: [s.id for s in mon.summaries()]  # type: ignore[attr-defined]
    monkeypatch.setattr(native, "apply_batch", apply_batch)
    _native_run(tmp_path, [good(0, 0, 2.0)], "new")
    assert mon.refresh() == {"new"}
    assert answered == [["known"]]


def test_export_during_live_writes_is_a_consistent_prefix(tmp_path: Path) -> None:
    def rows(lo: int, hi: int) -> list[bytes]:
        out = [
            ev(i, "metrics", step=i, values={"loss": 1.0 / (i + 1), "learning_rate": 1e-4})
            for i in range(lo, hi)
        ]
        out.append(ev(hi, "lora", step=hi, layers={f"q{lo}": {"A": 1.0, "B": 2.0}}))
        return out

    first = b"".join(rows(0, 10_000))
    d = _native_run(tmp_path / "live", [first])
    _native_run(tmp_path / "copy", [first])
    copy = Monitor(tmp_path / "copy", parallel=False)
    copy.refresh()
    expect = "".join(copy.export("run"))
    mon = Monitor(tmp_path / "live", parallel=False)
    mon.refresh()
    it = mon.export("run")
    got = [next(it)]
    with open(d / "events.jsonl", "ab") as f:
        f.write(b"".join(rows(10_001, 12_000)))
        f.write(ev(20_000, "metrics", step=20_000, values={"grad_norm": 3.0}))
    assert mon.refresh() == {"run"}
    got += list(it)
    assert "".join(got) == expect
    assert expect.count("\n") == 1 + 2 * 10_000 + 9_999 + 2  # header, loss, lr, steps/s, lora


@pytest.mark.parametrize("name", ["trainer_log.jsonl", "events.jsonl"])
def test_a_read_error_clears_once_the_file_reads_again(tmp_path: Path, name: str) -> None:
    d = tmp_path / "run"
    d.mkdir()
    os.mkfifo(d / name)
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    _refresh_within(mon)
    assert mon.summary("run").error == f"{name}: not a regular file"  # type: ignore[union-attr]
    os.unlink(d / name)
    if name == "events.jsonl":
        (d / name).write_bytes(good(0, 1, 2.5))
    else:
        (d / name).write_text('{"current_steps": 1, "total_steps": 9, "loss": 2.5}\n')
    assert _refresh_within(mon) == {"run"}
    s = mon.summary("run")
    assert s is not None and s.error is None and s.loss == 2.5 and s.step == 1


def _batch_picture(batch) -> dict:  # type: ignore[no-untyped-def]
    def rows(r) -> dict:  # type: ignore[no-untyped-def]
        return {
            "steps": r.steps,
            "ts": [repr(float(t)) for t in r.ts],
            "cols": {k: (rr, [repr(float(v)) for v in vv]) for k, (rr, vv) in r.cols.items()},
            "order": list(r.cols),
        }

    return {
        "train": rows(batch.train),
        "eval": rows(batch.eval),
        "events": repr(batch.events),
        "bad": batch.bad,
    }


M1 = '{"v":1,"seq":1,"t":1.5,"kind":"metrics","step":3'
ODD_FAST: list[bytes] = [
    raw(M1.replace('"seq":1', '"seq":-1') + ',"values":{"loss":1}}'),
    raw(M1.replace('"seq":1', '"seq":true') + ',"values":{"loss":1}}'),
    raw(M1.replace('"seq":1', '"seq":1.0') + ',"values":{"loss":1}}'),
    raw(M1.replace('"v":1', '"v":true') + ',"values":{"loss":1}}'),
    raw(M1.replace('"v":1', '"v":1.0') + ',"values":{"loss":1}}'),
    raw(M1.replace('"t":1.5', '"t":true') + ',"values":{"loss":1}}'),
    raw(M1 + ',"epoch":0.5,"values":{"epoch":9,"loss":1}}'),
    raw(M1 + ',"epoch":"NaN","values":{"loss":1,"epoch":9}}'),
    raw(M1 + ',"epoch":"soon","values":{"epoch":9,"loss":1}}'),
    raw(M1 + ',"epoch":true,"values":{"loss":1}}'),
    raw(M1 + ',"epoch":0.25,"values":{"epoch":"x","loss":2}}'),
    raw(M1 + ',"values":{"epoch":7,"loss":1,"b":true,"n":null,"s":"Infinity","d":{}}}'),
    raw(M1 + ',"values":{}}'),
    raw(M1.replace('"step":3', '"step":9223372036854775807') + ',"values":{"loss":1}}'),
    raw(M1.replace('"step":3', '"step":9223372036854775808') + ',"values":{"loss":1}}'),
    raw(M1 + ',"values":{"loss":18446744073709551615}}'),
    raw(M1 + ',"values":{"loss":-9223372036854775809}}'),
]


def test_fast_and_reference_decoders_agree_line_by_line() -> None:
    """Every line of the bad-input corpus and the odd cases above, through decode_block (the
    fast path) and through the reference path alone: the same rows, events and bad count."""
    from mudpuppy_monitor.core.sources.native_decode import NativeBatch, _slow, decode_block
    from tests.test_core_badinput import BAD, GOOD_ODD

    lines = [line for _, line in BAD] + [line for _, line, _ in GOOD_ODD] + ODD_FAST + BAD_STEPS
    lines.append(good(5, 5, 0.5))
    for line in lines:
        if len(line) > 1 << 20:
            continue  # FileTail drops these before any decoder sees them
        fast, slow = NativeBatch(), NativeBatch()
        decode_block(line if line.endswith(b"\n") else line + b"\n", fast)
        _slow(line.rstrip(b"\n"), slow)
        assert _batch_picture(fast) == _batch_picture(slow), line[:120]
    # and all of them as one block, as a file read delivers them
    fast, slow = NativeBatch(), NativeBatch()
    block = b"".join(ln for ln in lines if len(ln) <= 1 << 20)
    decode_block(block, fast)
    for ln in block.split(b"\n")[:-1]:
        _slow(ln, slow)
    assert _batch_picture(fast) == _batch_picture(slow)
    # the odd cases alone, exactly: one epoch per row, the top-level one winning
    fast = NativeBatch()
    decode_block(b"".join(ODD_FAST), fast)
    assert fast.bad == 7
    assert fast.train.steps == [3] * 7 + [2**63 - 1, 3, 3]
    rows, values = fast.train.cols["epoch"]
    assert rows == [0, 1, 2, 4, 5]
    assert [repr(float(v)) for v in values] == ["0.5", "nan", "9.0", "0.25", "7.0"]
    assert fast.train.cols["loss"][1][-2:] == [18446744073709551615, -9.223372036854776e18]


def test_hints_inside_a_root_that_is_a_run_need_no_full_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _native_run(tmp_path, [good(0, 0, 1.0)], "my-run")
    mon = Monitor(root, clock=lambda: T0, parallel=False)
    assert mon.refresh() == {"my-run"}
    passes: list[int] = []
    real_full = mon._full_pass
    monkeypatch.setattr(mon, "_full_pass", lambda: passes.append(1) or real_full())
    with open(root / "events.jsonl", "ab") as f:
        f.write(good(1, 1, 0.5))
    assert mon.refresh_paths([str(root / "events.jsonl")]) == {"my-run"}
    (root / "checkpoint-1").mkdir()
    assert mon.refresh_paths([str(root / "checkpoint-1"), str(root)]) == set()
    assert passes == []
    assert mon.series("my-run", ["loss"])["loss"]["y"] == [1.0, 0.5]
    # a root holding runs still sends an unknown path to a full pass
    mon2 = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    mon2.refresh()
    passes2: list[int] = []
    real_full2 = mon2._full_pass
    monkeypatch.setattr(mon2, "_full_pass", lambda: passes2.append(1) or real_full2())
    mon2.refresh_paths([str(tmp_path / "elsewhere.txt")])
    assert passes2 == [1]


@pytest.mark.parametrize("nan_at", [0, 5, 32, 63])
def test_a_nan_in_the_spike_window_gives_no_verdict_on_both_paths(nan_at: int) -> None:
    from mudpuppy_monitor.core.markers import spike_indices

    window = [1.0 + 0.01 * (i % 3) for i in range(64)]
    window[nan_at] = math.nan
    live = np.array(window + [100.0])  # one new value: the small path
    batch = np.array(window + [100.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # six: the vectorized path
    assert spike_indices(live, 64).tolist() == []
    assert spike_indices(batch, 64).tolist() == []
    clean = np.array([1.0 + 0.01 * (i % 3) for i in range(64)] + [100.0])
    assert spike_indices(clean, 64).tolist() == [64]


def test_end_restart_and_checkpoint_markers_survive_the_marker_cap(tmp_path: Path) -> None:
    from mudpuppy_monitor.core.markers import MAX_MARKERS

    lines = [ev(0, "start")]
    n = 2 * MAX_MARKERS + 100
    for i in range(n):  # NaN, 1.0, NaN, 1.0 ...: one nonfinite streak per pair
        lines.append(ev(i + 1, "metrics", step=i, values={"x": math.nan if i % 2 == 0 else 1.0}))
    lines += [
        ev(n + 1, "checkpoint", step=n, path="ckpt"),
        ev(n + 2, "end", step=n, status="interrupted"),
        ev(n + 3, "start", resumed_from=n),
        ev(n + 4, "metrics", step=n + 1, values={"x": math.nan}),
        ev(n + 5, "end", step=n + 1, status="completed"),
    ]
    _native_run(tmp_path, lines)
    mon = Monitor(tmp_path, clock=lambda: T0, parallel=False)
    mon.refresh()
    markers = mon.detail("run")["markers"]  # type: ignore[index]
    kinds = [m["kind"] for m in markers]
    assert kinds.count("nonfinite") == MAX_MARKERS
    assert kinds[MAX_MARKERS:] == ["checkpoint", "end", "restart", "end"]
    assert [m["step"] for m in markers[MAX_MARKERS:]] == [n, n, n, n + 1]


def test_meta_ppid_and_world_size_reach_the_summary_and_gpu_attribution(tmp_path: Path) -> None:
    from mudpuppy_monitor.gpu.attribution import attribute
    from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample

    single = _native_run(tmp_path, [good(0, 0, 1.0)], "single")
    (single / "meta.json").write_text(
        json.dumps({"pid": 100, "ppid": 50, "world_size": 1, "host": "h"})
    )
    odd = _native_run(tmp_path, [good(0, 0, 1.0)], "odd")
    (odd / "meta.json").write_text(json.dumps({"pid": 7, "ppid": True, "world_size": "2"}))
    mon = Monitor(tmp_path, clock=lambda: T0, pid_alive=lambda pid: True, host="h")
    mon.refresh()
    s = mon.summary("single")
    assert s is not None and (s.pid, s.ppid, s.world_size) == (100, 50, 1)
    d = s.to_dict()
    assert (d["ppid"], d["world_size"]) == (50, 1)
    o = mon.summary("odd")
    assert o is not None and (o.ppid, o.world_size) == (None, None)
    # another program started from the same shell (parent 50) is not this run's sibling
    sample = GpuSample(
        index=0, name="x", uuid="GPU-0", t=T0, processes=(GpuProcess(pid=300, used_bytes=1),)
    )
    got = attribute([sample], [s], hostname="h", ppid_of={300: 50, 100: 50}.get)
    assert got[0].runs == () and [p.pid for p in got[0].others] == [300]


def test_a_run_without_events_or_pid_is_unknown_not_running(tmp_path: Path) -> None:
    (tmp_path / "meta-only").mkdir()
    (tmp_path / "meta-only" / "meta.json").write_text('{"name": "m", "created": 1700000000.0}')
    _native_run(tmp_path, [b"garbage\n", b"{not json\n"], "garbage")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "events.jsonl").write_bytes(b"")
    alive = _native_run(tmp_path, [], "alive-no-events")
    (alive / "meta.json").write_text('{"pid": 100, "host": "h"}')
    mon = Monitor(tmp_path, clock=lambda: T0, pid_alive=lambda pid: True, host="h")
    mon.refresh()
    got = {s.id: s.status for s in mon.summaries()}
    assert got == {
        "meta-only": "unknown",
        "garbage": "unknown",
        "empty": "unknown",
        "alive-no-events": "running",  # its writer is alive on this host: just starting
    }
    assert mon.summary("garbage").bad_lines == 2  # type: ignore[union-attr]


def test_the_periodic_status_check_builds_no_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mudpuppy_monitor.core import queries

    _native_run(tmp_path, [good(0, 0, 1.0), good(1, 1, 0.5)])
    now = {"t": T0 + 1}
    mon = Monitor(tmp_path, clock=lambda: now["t"], parallel=False)
    built: list[str] = []
    real = queries.make_summary
    monkeypatch.setattr(
        queries, "make_summary", lambda run, *a: built.append(run.id) or real(run, *a)
    )
    assert mon.refresh() == {"run"}
    now["t"] = T0 + 3600  # silent for an hour: stalled -> unknown
    assert mon.refresh() == {"run"}
    assert mon.refresh() == set()
    assert built == []
    assert mon.summary("run").status == "unknown"  # type: ignore[union-attr]
    assert built == ["run"]


def test_an_unchanged_file_costs_one_stat_not_an_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mudpuppy_monitor.core.tail as tail

    d = _native_run(tmp_path, [good(0, 0, 1.0)])
    lf = tmp_path / "lf"
    lf.mkdir()
    (lf / "trainer_log.jsonl").write_text('{"current_steps": 1, "loss": 2.0}\n')
    opened: list[str] = []
    real_open = tail.open_regular
    monkeypatch.setattr(
        tail, "open_regular", lambda p, r: opened.append(os.path.basename(p)) or real_open(p, r)
    )
    mon = Monitor(tmp_path, poll=True, clock=lambda: T0, parallel=False)
    mon.refresh()
    assert sorted(opened) == ["events.jsonl", "trainer_log.jsonl"]
    opened.clear()
    assert mon.refresh_known() == set()
    assert opened == []
    with open(d / "events.jsonl", "ab") as f:
        f.write(good(1, 1, 0.5))
    assert mon.refresh_known() == {"run"}
    assert opened == ["events.jsonl"]
    assert mon.series("run", ["loss"])["loss"]["y"] == [1.0, 0.5]
