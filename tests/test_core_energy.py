"""The per-run energy accountant against hand-computed joules."""

from __future__ import annotations

import math

import pytest

from mudpuppy_monitor.core.energy import EnergyAccountant


def test_counter_differences_add_up_and_interpolate() -> None:
    acc = EnergyAccountant()
    for t, e in ((0.0, 1000.0), (1.0, 1300.0), (2.0, 1600.0)):
        acc.add("gpu0", t, energy_j=e, power_w=250.0)
    totals = acc.totals()
    assert (totals.joules, totals.counter_j, totals.power_j, totals.method) == (
        600.0,
        600.0,
        0.0,
        "counter",
    )
    iv = acc.interval(0.5, 1.5)  # 1150 J -> 1450 J on the linear curve
    assert (iv.joules, iv.complete, iv.method, iv.devices) == (300.0, True, "counter", 1)
    per = acc.joules_per_token(0.0, 1000, 2.0, 1300)
    assert (per.value, per.joules, per.tokens, per.reason) == (2.0, 600.0, 300, None)


def test_a_missing_counter_reading_is_covered_by_the_next_one() -> None:
    acc = EnergyAccountant()
    acc.add("gpu0", 0.0, energy_j=1000.0)
    acc.add("gpu0", 1.0, energy_j=None, power_w=300.0)
    assert acc.covered_until() == 0.0  # waiting for the counter
    assert not acc.interval(0.0, 1.0).complete
    acc.add("gpu0", 2.0, energy_j=1700.0)
    assert acc.totals().joules == 700.0 and acc.totals().power_j == 0.0
    iv = acc.interval(0.0, 2.0)
    assert iv.complete and iv.joules == 700.0 and iv.method == "counter"


def test_a_counter_reset_is_bridged_by_power_and_flagged() -> None:
    acc = EnergyAccountant()
    acc.add("gpu0", 0.0, energy_j=5000.0, power_w=200.0)
    acc.add("gpu0", 1.0, energy_j=5200.0, power_w=200.0)
    acc.add("gpu0", 2.0, energy_j=10.0, power_w=300.0)  # driver reloaded: counter restarted
    acc.add("gpu0", 3.0, energy_j=260.0, power_w=250.0)  # counting again from the new base
    totals = acc.totals()
    # 200 (counter) + (200 + 300) / 2 x 1 s (trapezoid) + 250 (counter)
    assert (totals.joules, totals.counter_j, totals.power_j) == (700.0, 450.0, 250.0)
    assert (totals.resets, totals.method) == (1, "mixed")
    iv = acc.interval(1.0, 2.0)
    assert (iv.joules, iv.from_power_s, iv.method, iv.complete) == (250.0, 1.0, "power", True)
    assert acc.interval(0.0, 3.0).method == "mixed"


def test_power_is_integrated_by_trapezoid_where_there_is_no_counter() -> None:
    acc = EnergyAccountant()
    acc.add("gpu0", 0.0, power_w=100.0)
    acc.add("gpu0", 2.0, power_w=300.0)  # (100 + 300) / 2 x 2 s = 400 J
    acc.add("gpu0", 3.0, power_w=None)  # missing: bridged by its neighbours
    acc.add("gpu0", 4.0, power_w=200.0)  # (300 + 200) / 2 x 2 s = 500 J
    totals = acc.totals()
    assert (totals.joules, totals.power_j, totals.method, totals.gaps) == (900.0, 900.0, "power", 0)
    iv = acc.interval(0.0, 4.0)
    assert (iv.joules, iv.from_power_s, iv.method, iv.complete) == (900.0, 4.0, "power", True)
    assert acc.interval(1.0, 3.0).joules == pytest.approx(450.0)  # 200 + 250 on the curve


def test_a_long_silence_is_a_gap_not_invented_energy() -> None:
    acc = EnergyAccountant(max_gap_s=60.0)
    acc.add("gpu0", 0.0, power_w=100.0)
    acc.add("gpu0", 100.0, power_w=100.0)
    acc.add("gpu0", 101.0, power_w=100.0)
    totals = acc.totals()
    assert (totals.joules, totals.gaps, totals.gap_s) == (100.0, 1, 100.0)
    iv = acc.interval(50.0, 101.0)
    assert not iv.complete and iv.uncovered_s == 50.0 and iv.joules == 100.0
    per = acc.joules_per_token(50.0, 0, 101.0, 100)
    assert per.value is None and per.joules == 100.0
    assert per.reason == "energy not measured for 50.0 device-seconds of the interval"
    assert acc.joules_per_token(100.0, 0, 101.0, 50).value == 2.0


def test_a_counter_too_far_apart_is_not_trusted_across_the_gap() -> None:
    acc = EnergyAccountant(max_gap_s=60.0)
    acc.add("gpu0", 0.0, energy_j=0.0)
    acc.add("gpu0", 90.0, energy_j=9000.0)  # the device may not have been the run's meanwhile
    acc.add("gpu0", 91.0, energy_j=9100.0)
    assert (acc.totals().joules, acc.totals().gaps) == (100.0, 1)


def test_a_lapsed_counter_falls_back_to_power_and_returns() -> None:
    acc = EnergyAccountant(max_gap_s=60.0)
    acc.add("gpu0", 0.0, energy_j=0.0, power_w=100.0)
    acc.add("gpu0", 30.0, power_w=100.0)  # counter readings fail from here
    acc.add("gpu0", 61.0, power_w=100.0)  # 61 s without one: integrate power instead
    assert acc.totals().power_j == 6100.0
    acc.add("gpu0", 62.0, energy_j=7000.0, power_w=100.0)  # back: 1 s by power, then counter
    acc.add("gpu0", 63.0, energy_j=7150.0, power_w=100.0)
    totals = acc.totals()
    assert (totals.joules, totals.power_j, totals.counter_j) == (6350.0, 6200.0, 150.0)
    assert totals.method == "mixed" and totals.gaps == 0


def test_devices_add_up_and_each_must_cover_the_interval() -> None:
    acc = EnergyAccountant()
    for t in range(0, 11):
        acc.add("gpu0", float(t), energy_j=100.0 * t)
        acc.add("gpu1", float(t), energy_j=50.0 * t)
    acc.add("gpu2", 5.0, power_w=80.0)  # attributed to the run from t=5 on
    acc.add("gpu2", 10.0, power_w=80.0)
    assert acc.interval(6.0, 10.0).joules == 400.0 + 200.0 + 320.0
    assert acc.interval(6.0, 10.0).complete
    iv = acc.interval(0.0, 10.0)
    assert not iv.complete and iv.uncovered_s == 5.0 and iv.devices == 3
    assert acc.interval(0.0, 4.0).devices == 2  # gpu2 was not the run's yet
    per = acc.joules_per_token(0.0, 0.0, 4.0, 1200.0)
    assert per.value == (400.0 + 200.0) / 1200.0
    assert acc.totals().joules == 1000.0 + 500.0 + 400.0
    assert acc.devices == ("gpu0", "gpu1", "gpu2")


def test_kwh() -> None:
    acc = EnergyAccountant(max_gap_s=7200.0)
    acc.add("gpu0", 0.0, energy_j=0.0)
    acc.add("gpu0", 3600.0, energy_j=3.6e6)  # 1 kW for an hour
    assert acc.totals().kwh == 1.0
    assert acc.totals().to_dict()["kwh"] == 1.0


def test_bad_samples_are_dropped_or_read_as_missing() -> None:
    acc = EnergyAccountant()
    acc.add("gpu0", 0.0, energy_j=100.0)
    acc.add("gpu0", 0.0, energy_j=200.0)  # same time
    acc.add("gpu0", -1.0, energy_j=300.0)  # earlier
    acc.add("gpu0", math.nan, energy_j=300.0)
    acc.add("gpu0", math.inf, energy_j=300.0)
    assert acc.totals().rejected == 4
    acc.add("gpu0", 1.0, energy_j=math.nan, power_w=-5.0)  # both missing
    acc.add("gpu0", 2.0, energy_j=400.0)
    assert acc.totals().joules == 300.0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((0.0, 0, 0.0, 10), "empty interval"),
        ((5.0, 0, 1.0, 10), "empty interval"),
        ((0.0, 10, 1.0, 10), "no tokens processed in the interval"),
        ((0.0, 20, 1.0, 10), "no tokens processed in the interval"),
        ((0.0, math.nan, 1.0, 10), "time or token count not a number"),
        ((100.0, 0, 200.0, 10), "no energy samples in the interval"),
    ],
)
def test_joules_per_token_says_why_it_is_unknown(args: tuple[float, ...], reason: str) -> None:
    acc = EnergyAccountant()
    acc.add("gpu0", 0.0, energy_j=0.0)
    acc.add("gpu0", 1.0, energy_j=10.0)
    per = acc.joules_per_token(*args)
    assert per.value is None and per.reason == reason


def test_an_empty_accountant() -> None:
    acc = EnergyAccountant()
    assert acc.covered_until() is None
    assert acc.totals().joules == 0.0 and acc.totals().method is None
    iv = acc.interval(0.0, 1.0)
    assert (iv.devices, iv.complete, iv.method) == (0, False, None)
    with pytest.raises(ValueError):
        EnergyAccountant(max_gap_s=0.0)


def test_trim_keeps_totals_and_recent_intervals() -> None:
    acc = EnergyAccountant()
    for t in range(0, 101):
        acc.add("gpu0", float(t), energy_j=10.0 * t)
    acc.trim_before(90.0)
    assert acc.totals().joules == 1000.0
    assert acc.interval(95.0, 100.0).joules == 50.0 and acc.interval(95.0, 100.0).complete
    assert acc.interval(90.0, 92.5).joules == 25.0
