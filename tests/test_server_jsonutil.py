"""jsonutil: strict JSON in which a non-finite number stays visible as a string."""

from __future__ import annotations

import json
import math

import numpy as np

from mudpuppy_monitor import jsonutil


def test_a_column_of_finite_numbers_is_passed_through_without_a_copy():
    column = [1, 2.5, -3.0, 0, 1e308]
    assert jsonutil.json_safe(column) is column
    assert jsonutil.dumps({"y": column}) == b'{"y":[1,2.5,-3.0,0,1e+308]}'


def test_non_finite_values_become_strings_wherever_they_are():
    doc = {
        "y": [1.0, math.nan, math.inf, -math.inf],
        "big": [1e308, 1e308],  # finite, though their sum overflows
        "mixed": [1.0, None, "x", [math.nan]],
        "matrix": [[1.0, 2.0], [math.inf, 3.0]],
        "tuple": (math.nan,),
        "array": np.array([1.0, np.nan]),
        "scalar": np.float32("inf"),
        "int": np.int64(7),
    }
    assert jsonutil.loads(jsonutil.dumps(doc)) == {
        "y": [1.0, "NaN", "Infinity", "-Infinity"],
        "big": [1e308, 1e308],
        "mixed": [1.0, None, "x", ["NaN"]],
        "matrix": [[1.0, 2.0], ["Infinity", 3.0]],
        "tuple": ["NaN"],
        "array": [1.0, "NaN"],
        "scalar": "Infinity",
        "int": 7,
    }


def test_a_lone_surrogate_from_a_file_becomes_a_replacement_character():
    # json.loads('"\\udcff"') is a str UTF-8 cannot carry: a name in meta.json, a series name
    doc = {"name": "x\udcffy", "values": {"lo\ud800ss": [1.0, math.nan]}, "ok": "\U0001f600"}
    assert jsonutil.loads(jsonutil.dumps(doc)) == {
        "name": "x\ufffdy",
        "values": {"lo\ufffdss": [1.0, "NaN"]},
        "ok": "\U0001f600",
    }


def test_a_run_with_a_lone_surrogate_in_its_names_does_not_break_the_listing(tmp_path):
    from tests.serverutil import LiveServer, RunDir

    RunDir(tmp_path, "fine").metrics(1, loss=1.0)
    odd = RunDir(tmp_path, "odd", meta={"name": "x\udcffy"})  # json.dumps escapes it: \\udcff
    line = {"v": 1, "seq": 1, "t": 1.0, "kind": "metrics", "step": 1, "values": {"lo\ud800ss": 2}}
    with odd.events.open("a") as f:
        f.write(json.dumps(line) + "\n")
    with LiveServer(tmp_path) as srv:
        runs = {r["id"]: r for r in srv.get_json("/api/runs")["runs"]}
        assert set(runs) == {"fine", "odd"} and runs["odd"]["name"] == "x\ufffdy"
        assert "lo\ufffdss" in srv.get_json("/api/runs/odd")["series"]
