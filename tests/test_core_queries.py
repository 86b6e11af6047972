"""Queries: decimation that keeps every spike, raw answers when small, cursors, LoRA, export, markers."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.decimate import decimate, minmax_indices
from mudpuppy_monitor.jsonutil import dumps

T0 = 1_700_000_000.0


def test_minmax_keeps_spikes_and_nan() -> None:
    n = 1_000_000
    y = np.sin(np.arange(n) / 5000.0)
    y[123_457] = 50.0
    y[654_321] = -50.0
    y[900_001] = np.nan
    y[900_002] = np.inf
    x = np.arange(n)
    dx, dy, dec = decimate(x, y, 2000)
    assert dec
    assert 2000 <= len(dx) <= 3000
    assert 123_457 in dx and 654_321 in dx and 900_001 in dx and 900_002 in dx
    assert np.nanmax(dy) == np.inf and np.nanmin(dy) == -50.0
    assert np.isnan(dy).sum() == 1
    assert np.all(np.diff(dx) > 0)  # in order, no duplicates
    # every bucket's extremes are kept: the max of the answer over any range equals the data's
    for lo, hi in ((0, 5000), (400_000, 400_500), (999_000, n)):
        sel = (dx >= lo) & (dx < hi)
        finite = np.isfinite(y[lo:hi])
        if sel.any():
            assert (
                np.nanmax(np.where(np.isfinite(dy[sel]), dy[sel], -np.inf))
                <= y[lo:hi][finite].max()
            )


def test_small_ranges_are_raw() -> None:
    y = np.arange(10.0)
    assert minmax_indices(y, 10) is None
    dx, dy, dec = decimate(np.arange(10), y, 2000)
    assert not dec and dy.tolist() == y.tolist()


def _run(root: Path, name: str, lines: list[bytes]) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    with open(root / name / "events.jsonl", "ab") as f:
        f.write(b"".join(lines))


def ev(seq: int, kind: str, **fields: object) -> bytes:
    return encode_line({"v": 1, "seq": seq, "t": T0 + seq, "kind": kind, **fields})


def test_series_by_step_and_time_with_ranges(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "r",
        [ev(i, "metrics", step=i * 10, values={"loss": float(i)}) for i in range(100)],
    )
    _run(tmp_path, "r", [ev(100, "eval", step=990, values={"loss": 0.5})])
    mon = Monitor(tmp_path)
    mon.refresh()
    got = mon.series("r", ["loss", "eval_loss", "nope"], x="step", start=100, end=200)
    assert set(got) == {"loss", "eval_loss"}
    assert got["loss"] == {
        "x": list(range(100, 201, 10)),
        "y": [float(i) for i in range(10, 21)],
        "count": 100,
        "decimated": False,
    }
    assert got["eval_loss"]["x"] == [] and got["eval_loss"]["count"] == 1
    by_t = mon.series("r", ["loss"], x="time", start=T0 + 95)["loss"]
    assert by_t["x"] == [T0 + i for i in range(95, 100)]
    dec = mon.series("r", ["loss"], points=10)["loss"]
    assert dec["decimated"] and dec["count"] == 100 and dec["x"][0] == 0 and dec["x"][-1] == 990
    with pytest.raises(ValueError):
        mon.series("r", ["loss"], x="epoch")


def test_points_since_cursor_and_limit(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "r",
        [ev(i, "metrics", step=i, values={"loss": float(i), "lr": 0.1}) for i in range(5)],
    )
    mon = Monitor(tmp_path)
    mon.refresh()
    gen, grown = mon.points_since("r", {"loss": 3, "lr": 5, "epoch": 0})
    assert gen == mon.generation("r")
    assert grown == {
        "loss": {"i0": 3, "step": [3, 4], "t": [T0 + 3, T0 + 4], "y": [3.0, 4.0]},
        "steps_per_s": {
            "i0": 0,
            "step": [1, 2, 3, 4],
            "t": [T0 + i for i in range(1, 5)],
            "y": [1.0] * 4,
        },
    }
    _, only = mon.points_since("r", {}, names=["loss"], limit=2)
    assert only == {"loss": {"i0": 3, "step": [3, 4], "t": [T0 + 3, T0 + 4], "y": [3.0, 4.0]}}
    assert mon.counts("r") == {"loss": 5, "lr": 5, "steps_per_s": 4}


def test_markers_for_nan_spike_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [ev(0, "start")]
    losses = 2.0 + 0.01 * rng.standard_normal(300)
    losses[150] = 9.0  # a spike
    losses[200] = math.nan  # a NaN streak of two
    losses[201] = math.nan
    for i, x in enumerate(losses):
        lines.append(ev(i + 1, "metrics", step=i, values={"loss": float(x)}))
    lines.append(ev(400, "checkpoint", step=299, path="ckpt/299"))
    _run(tmp_path, "r", lines)
    mon = Monitor(tmp_path)
    mon.refresh()
    marks = mon.detail("r")["markers"]  # type: ignore[index]
    assert [(m["kind"], m["step"]) for m in marks] == [
        ("spike", 150),
        ("nonfinite", 200),
        ("checkpoint", 299),
    ]
    assert marks[1]["series"] == "loss" and marks[1]["t"] == T0 + 201
    assert mon.markers_since("r", 2) == [marks[2]]
    s = mon.summary("r")
    assert s is not None and s.nonfinite == 2 and s.best_loss == float(np.nanmin(losses))
    # the same markers when the lines arrive one by one
    (tmp_path / "r2").mkdir()
    mon2 = Monitor(tmp_path)
    for ln in lines:
        with open(tmp_path / "r2" / "events.jsonl", "ab") as f:
            f.write(ln)
        mon2.refresh()
    marks2 = mon2.detail("r2")["markers"]  # type: ignore[index]
    assert [(m["kind"], m["step"]) for m in marks2] == [
        ("spike", 150),
        ("nonfinite", 200),
        ("checkpoint", 299),
    ]


def test_summary_and_detail_are_json_safe(tmp_path: Path) -> None:
    _run(tmp_path, "r", [ev(0, "metrics", step=0, values={"loss": math.nan})])
    mon = Monitor(tmp_path)
    mon.refresh()
    s = mon.summary("r")
    assert s is not None and math.isnan(s.loss)  # type: ignore[arg-type]
    d = s.to_dict()
    assert d["loss"] == "NaN" and d["best_loss"] is None
    body = orjson.loads(dumps(mon.detail("r")))
    assert body["summary"]["loss"] == "NaN" and body["source"] == "native"
    assert orjson.loads(dumps(mon.series("r", ["loss"])))["loss"]["y"] == ["NaN"]


def test_lora_matrix(tmp_path: Path) -> None:
    layers = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]
    lines = []
    for k in range(10):
        norms = {
            name: {"A": 1.0 + k + j, "B": 0.01 * k, "update": 0.001 * k}
            for j, name in enumerate(layers)
        }
        if k == 5:
            norms[layers[1]]["A"] = math.nan
        lines.append(ev(k, "lora", step=k * 100, layers=norms))
    lines.append(
        ev(10, "lora", step=1000, layers={"model.layers.1.mlp.up_proj": {"A": 7.0, "B": 0.5}})
    )
    _run(tmp_path, "r", lines)
    mon = Monitor(tmp_path)
    mon.refresh()
    got = mon.lora("r", points=200)
    assert got is not None
    assert got["layers"] == layers + ["model.layers.1.mlp.up_proj"]
    assert got["steps"] == [k * 100 for k in range(11)]
    assert got["A"][0][:3] == [1.0, 2.0, 3.0]
    assert math.isnan(got["A"][1][5])
    assert math.isnan(got["A"][2][0]) and got["A"][2][10] == 7.0  # a layer seen late
    assert got["update"][0][10] != got["update"][0][10]  # not reported in the last snapshot
    few = mon.lora("r", points=3)
    assert few is not None and few["steps"] == [0, 500, 1000]
    assert mon.detail("r")["lora_layers"] == got["layers"]  # type: ignore[index]
    assert mon.lora("missing") is None


def test_export_csv_and_jsonl_round_trip(tmp_path: Path) -> None:
    lines = [
        ev(i, "metrics", step=i, values={"loss": 1.0 / (i + 1), "lr": 1e-4}) for i in range(20000)
    ]
    lines.append(ev(20000, "metrics", step=20000, values={"loss": math.inf}))
    lines.append(ev(20001, "eval", step=20000, values={"eval_loss": 0.3}))
    lines.append(ev(20002, "lora", step=20000, layers={"m.q": {"A": 1.5, "B": 0.25}}))
    _run(tmp_path, "r", lines)
    mon = Monitor(tmp_path)
    mon.refresh()
    text = "".join(mon.export("r", "csv"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["series", "step", "t", "value"]
    loss = [r for r in rows[1:] if r[0] == "loss"]
    assert len(loss) == 20001
    assert (
        float(loss[7][3]) == 1.0 / 8 and float(loss[7][2]) == T0 + 7 and loss[-1][3] == "Infinity"
    )
    assert ["eval_loss", "20000", repr(T0 + 20001), "0.3"] in rows
    assert ["lora/m.q/A", "20000", repr(T0 + 20002), "1.5"] in rows
    objs = [json.loads(x) for x in "".join(mon.export("r", "jsonl")).splitlines()]
    assert len(objs) == len(rows) - 1
    assert objs[0] == {"series": "loss", "step": 0, "t": T0, "value": 1.0}
    assert {"series": "loss", "step": 20000, "t": T0 + 20000, "value": "Infinity"} in objs
    with pytest.raises(ValueError):
        next(iter(mon.export("r", "xml")))


def test_minmax_picks_each_buckets_min_max_and_first_nan_in_order() -> None:
    """Against a plain per-bucket reference, over random data with NaN and ties."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        n, points = int(rng.integers(3, 3000)), int(rng.integers(2, 200))
        y = rng.standard_normal(n)
        if trial % 2:
            y[rng.random(n) < 0.2] = np.nan
        if trial % 7 == 0:
            y = np.round(y)  # ties: the first of equal values is kept
        got = minmax_indices(y, points)
        if n <= points:
            assert got is None
            continue
        size = -(-n // max(1, points // 2))
        want: set[int] = set()
        for a in range(0, n, size):
            b = y[a : a + size]
            real = np.flatnonzero(~np.isnan(b))
            if len(real):
                want.add(a + int(real[np.argmin(b[real])]))
                want.add(a + int(real[np.argmax(b[real])]))
            if np.isnan(b).any():
                want.add(a + int(np.flatnonzero(np.isnan(b))[0]))
            if not len(real):
                want.add(a)  # an all-NaN bucket: its first point
        assert got is not None and got.tolist() == sorted(want), trial


def test_series_answer_carries_its_generation_and_defaults_to_every_series(
    tmp_path: Path,
) -> None:
    _run(
        tmp_path, "r", [ev(i, "metrics", step=i, values={"loss": 1.0, "lr": 0.1}) for i in range(3)]
    )
    _run(tmp_path, "r", [ev(3, "eval", step=2, values={"loss": 0.5})])
    mon = Monitor(tmp_path)
    mon.refresh()
    got = mon.series("r")
    assert list(got) == ["loss", "lr", "steps_per_s", "eval_loss"]
    assert got.generation == mon.generation("r")
    assert mon.series("r", []) == {} and mon.series("r", []).generation == mon.generation("r")
    unknown = mon.series("missing")
    assert unknown == {} and unknown.generation is None
    before = got.generation
    (tmp_path / "r" / "events.jsonl").write_bytes(ev(0, "metrics", step=0, values={"loss": 2.0}))
    mon.refresh()  # replaced: a new generation, and the answer says so
    again = mon.series("r", ["loss"])
    assert again.generation == mon.generation("r") != before
    assert again["loss"]["y"] == [2.0]


def test_marker_count_and_last_lora_row(tmp_path: Path) -> None:
    layers = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]
    lines = [ev(0, "metrics", step=0, values={"loss": math.nan})]
    lines.append(ev(1, "lora", step=10, layers={layers[0]: {"A": 1.0, "B": 0.0}}))
    lines.append(ev(2, "lora", step=20, layers={layers[1]: {"A": 3.0, "B": 0.5, "update": 0.25}}))
    lines.append(ev(3, "checkpoint", step=20, path="ckpt"))
    _run(tmp_path, "r", lines)
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.marker_count("r") == len(mon.detail("r")["markers"]) == 2  # type: ignore[index]
    assert mon.marker_count("missing") == 0 and mon.last_lora("missing") is None
    row = mon.last_lora("r")
    assert row is not None and (row.step, row.t) == (20, T0 + 2)
    assert list(row.layers) == layers
    assert row.layers[layers[1]] == {"A": 3.0, "B": 0.5, "update": 0.25}
    assert all(math.isnan(v) for v in row.layers[layers[0]].values())  # not in this snapshot
    # the same numbers as the last column of the matrix
    full = mon.lora("r")
    assert full is not None and full["steps"][-1] == row.step
    assert [full["A"][i][-1] for i in range(2)][1] == row.layers[layers[1]]["A"]
    _run(tmp_path / "nolora", "r", [ev(0, "metrics", step=0, values={"loss": 1.0})])
    mon2 = Monitor(tmp_path / "nolora")
    mon2.refresh()
    assert mon2.last_lora("r") is None and mon2.marker_count("r") == 0
