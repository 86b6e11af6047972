"""jsonutil: strict JSON in which a non-finite number stays visible as a string."""

from __future__ import annotations

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
