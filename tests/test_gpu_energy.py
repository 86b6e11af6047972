"""Energy counter readings of NVML and AMD SMI, in joules (shapes from the bindings' sources)."""

from __future__ import annotations

import math

import pytest

from mudpuppy_monitor.gpu.energy import amd_energy_j, nvml_energy_j


def test_nvml_millijoules() -> None:
    assert nvml_energy_j(123_456) == 123.456
    assert nvml_energy_j(0) == 0.0


@pytest.mark.parametrize("value", [None, -1, "N/A", True, math.nan, math.inf, (1 << 64) - 1])
def test_nvml_non_counts_are_none(value: object) -> None:
    assert nvml_energy_j(value) is None


def test_amd_counter_times_resolution() -> None:
    # amdsmi >= 6.2.1 and 7.x: energy_accumulator (counts) x counter_resolution (uJ per count)
    got = amd_energy_j(
        {"energy_accumulator": 1_000_000, "counter_resolution": 15.3, "timestamp": 1}
    )
    assert got == pytest.approx(15.3)
    # older bindings: the same counter under the key "power"
    assert amd_energy_j({"power": 2_000_000, "counter_resolution": 15.3}) == pytest.approx(30.6)
    # both present (6.2 .. 6.4 docs list both): the new name wins
    both = {"energy_accumulator": 10, "power": 99, "counter_resolution": 1e6}
    assert amd_energy_j(both) == 10.0


@pytest.mark.parametrize(
    "result",
    [
        None,
        "N/A",
        {},
        {"energy_accumulator": "N/A", "counter_resolution": 15.3},
        {"energy_accumulator": 10},
        {"energy_accumulator": 10, "counter_resolution": 0.0},
        {"energy_accumulator": 10, "counter_resolution": "N/A"},
        {"energy_accumulator": -10, "counter_resolution": 15.3},
        {"energy_accumulator": True, "counter_resolution": 15.3},
    ],
)
def test_amd_unusable_results_are_none(result: object) -> None:
    assert amd_energy_j(result) is None


def test_amd_value_unit_dicts_are_read() -> None:
    result = {"energy_accumulator": {"value": 4, "unit": ""}, "counter_resolution": 0.5}
    assert amd_energy_j(result) == 2e-6
