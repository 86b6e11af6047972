"""Config flattening and diff (core/configdiff.py), and the Monitor's query over real runs."""

from __future__ import annotations

import json
import math

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.configdiff import (
    MAX_DEPTH,
    MAX_KEYS,
    MAX_TEXT,
    config_diff,
    config_of,
    differing_keys,
    flatten_config,
    pick,
    split_ids,
    value_text,
)
from tests import sweep


def test_nested_config_flattens_to_dotted_keys_in_order():
    cfg = {
        "lr": 1e-4,
        "lora": {"r": 8, "targets": ["q", "v"], "extra": {}},
        "model": {"a": {"b": 1}},
    }
    assert flatten_config(cfg) == {
        "lr": 1e-4,
        "lora.r": 8,
        "lora.targets": ["q", "v"],
        "lora.extra": {},
        "model.a.b": 1,
    }
    assert list(flatten_config(cfg)) == ["lr", "lora.r", "lora.targets", "lora.extra", "model.a.b"]


def test_flattening_is_bounded():
    deep: dict = {"leaf": 1}
    for _ in range(MAX_DEPTH + 5):
        deep = {"d": deep}
    flat = flatten_config(deep)
    (key,) = flat
    assert key.count(".") == MAX_DEPTH - 1 and isinstance(flat[key], dict)
    wide = {f"k{i}": i for i in range(MAX_KEYS + 50)}
    assert len(flatten_config(wide)) == MAX_KEYS
    long = flatten_config({"path": "x" * (MAX_TEXT + 10)})["path"]
    assert long.startswith("x" * MAX_TEXT) and long.endswith(f"({MAX_TEXT + 10} characters)")


def test_the_sweep_differs_exactly_in_lr_and_seed():
    configs = {sweep.run_name(lr, s): sweep.config(lr, s) for lr in sweep.LRS for s in sweep.SEEDS}
    got = config_diff(configs)
    assert got["keys"] == ["lr", "seed"]
    assert got["values"]["lr0.001-seed1"]["lora.targets"] == ["q_proj", "v_proj"]
    assert got["values"]["lr0.001-seed1"]["lr"] == 1e-3
    # a subset with one learning rate differs only in the seed
    sub = {k: v for k, v in configs.items() if k.startswith("lr0.001-")}
    assert config_diff(sub)["keys"] == ["seed"]


def test_equality_rules():
    assert differing_keys({"a": {"x": 1}, "b": {"x": 1.0}}) == []  # one JSON number
    assert differing_keys({"a": {"x": True}, "b": {"x": 1}}) == ["x"]  # a bool is not a number
    assert differing_keys({"a": {"x": math.nan}, "b": {"x": math.nan}}) == []  # NaN agrees
    assert differing_keys({"a": {"x": None}, "b": {}}) == ["x"]  # null is not absent
    assert differing_keys({"a": {"x": [1, 2]}, "b": {"x": [2, 1]}}) == ["x"]
    assert differing_keys({"a": {"x": {"p": 1, "q": 2}}, "b": {"x": {"q": 2, "p": 1}}}) == []
    assert differing_keys({"a": {"x": 1}}) == []  # one run: nothing to compare
    assert config_diff({}) == {"keys": [], "values": {}}


def test_meta_without_a_config_object_has_an_empty_one():
    assert config_of({}) == {}
    assert config_of({"config": "lr=3"}) == {}
    assert config_of({"config": [1, 2]}) == {}
    assert config_of({"config": {"a": 1}}) == {"a": 1}


def test_small_helpers():
    assert split_ids(None) is None
    assert split_ids(" a, ,b,a ,") == ["a", "b", "a"]
    assert pick(["b", "x", "b", "a"], ["a", "b"]) == (["b", "a"], ["x"])
    assert value_text(3e-4) == "0.0003"
    assert value_text(True) == "true" and value_text(None) == "null"
    assert value_text(math.nan) == "NaN" and value_text(-math.inf) == "-inf"
    assert value_text(["q", "v"]) == "[q, v]"
    assert value_text("x" * 50, 10) == "x" * 9 + "…"


def test_monitor_answers_the_diff_of_runs_written_by_the_real_writer(tmp_path):
    ids = sweep.write_sweep(tmp_path)
    (tmp_path / "no-config").mkdir()
    mon = Monitor(tmp_path, parallel=False)
    mon.refresh()
    got = mon.config_diff(ids)
    assert got["keys"] == ["lr", "seed"]
    assert set(got["values"]) == set(ids)
    assert got["values"]["lr0.0003-seed1"]["model.hidden_size"] == 64
    assert mon.config_diff([ids[0], "missing"])["values"].keys() == {ids[0]}
    # a run without a config (an HF output dir, a LLaMA-Factory log) lacks every key
    (tmp_path / "hf").mkdir()
    state = {"log_history": [{"loss": 1.0, "step": 1}], "max_steps": 10}
    (tmp_path / "hf" / "trainer_state.json").write_text(json.dumps(state))
    mon.refresh()
    every = mon.config_diff()
    assert every["values"]["hf"] == {}
    assert "batch_size" in every["keys"]  # present in six runs, absent in one


def test_summary_carries_the_best_eval_loss(tmp_path):
    ids = sweep.write_sweep(tmp_path, steps=80)
    mon = Monitor(tmp_path, parallel=False)
    mon.refresh()
    s = mon.summary(ids[0])
    assert s is not None
    lr, seed = sweep.LRS[0], sweep.SEEDS[0]
    evals = [sweep.loss_at(lr, seed, st) + 0.05 for st in (40, 80)]
    assert s.best_eval_loss == min(evals)
    assert s.to_dict()["best_eval_loss"] == min(evals)


def test_columns_keep_spikes_and_both_ends(tmp_path):
    from tests.serverutil import RunDir

    run = RunDir(tmp_path, "long")
    for s in range(1, 5001):
        run.metrics(s, t=1000.0 + s, loss=9.0 if s == 2222 else 1.0 + (s % 10) / 100)
    mon = Monitor(tmp_path, parallel=False)
    mon.refresh()
    col = mon.columns("long", ["loss", "nope"], points=100)["loss"]
    assert set(mon.columns("long", ["loss", "nope"], points=100)) == {"loss"}
    assert col["count"] == 5000 and col["decimated"]
    assert len(col["y"]) <= 152
    assert col["step"][0] == 1 and col["step"][-1] == 5000
    assert col["t"][-1] == 6000.0
    assert 9.0 in col["y"].tolist()  # the spike
    assert mon.columns("nope") == {}
