from __future__ import annotations

import math
import re

import pytest

from mudpuppy_monitor.gpu.fake import (
    FAKE_MEM_TOTAL_BYTES,
    FakeBackend,
    fake_energy_j,
    fake_phase,
    fake_uuid,
)
from mudpuppy_monitor.gpu.records import GpuProcess


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_same_seed_and_time_give_identical_samples() -> None:
    a = FakeBackend(devices=4, seed=7, clock=Clock(1_700_000_000.0))
    b = FakeBackend(devices=4, seed=7, clock=Clock(1_700_000_000.0))
    assert a.sample() == b.sample()


def test_pinned_values_for_seed_0() -> None:
    # pins the generator: a change here changes every screenshot and demo
    (s,) = FakeBackend(devices=1, seed=0, clock=Clock(1000.0)).sample()
    assert s.uuid == fake_uuid(0, 0) == "GPU-591eb0c5-49f5-bdcd-49f7-45c7492a176d"
    assert s.to_dict() == {
        "index": 0,
        "name": "Simulated GPU 80GB (fake)",
        "uuid": "GPU-591eb0c5-49f5-bdcd-49f7-45c7492a176d",
        "t": 1000.0,
        "util_pct": 52.0,
        "mem_util_pct": 30.0,
        "mem_used_bytes": 46_970_961_920,
        "mem_total_bytes": 85_899_345_920,
        "temperature_c": 57.0,
        "power_w": 384.9,
        "power_limit_w": 700.0,
        "sm_clock_mhz": 1706.0,
        "mem_clock_mhz": 2619.0,
        "fan_pct": 56.0,
        "energy_j": 0.0,  # the counter starts when the backend opens
        "processes": [{"pid": 900000, "used_bytes": 46_970_961_920 - 512 * 1024 * 1024}],
        "simulated": True,
    }


def test_energy_counter_is_the_integral_of_the_noiseless_power_curve() -> None:
    # hand-written curve: 85 W idle + 5.8 W per % of a 62 +- 30 % wave of period 47 s
    phase = fake_phase(4, 1)

    def power(s: float) -> float:
        return 85 + 5.8 * (62 + 30 * math.sin(2 * math.pi * (s / 47 + phase)))

    a, b, n = 1_700_000_000.0, 1_700_000_030.0, 30_000
    h = (b - a) / n
    midpoint = sum(power(a + (k + 0.5) * h) for k in range(n)) * h
    assert fake_energy_j(4, 1, b, since=a) == pytest.approx(midpoint, rel=1e-8)
    assert fake_energy_j(4, 1, b) - fake_energy_j(4, 1, a) == pytest.approx(midpoint, rel=1e-6)
    # the samples carry it; it only grows; over whole periods its rate is the power readings'
    # mean (they scatter around the curve with noise)
    clock = Clock(a)
    backend = FakeBackend(devices=2, seed=4, clock=clock)
    energies, powers = [], []
    for step in range(3 * 47 + 1):
        clock.t = a + step
        s = backend.sample()[1]
        assert s.energy_j == fake_energy_j(4, 1, clock.t, since=a)  # opened at a
        energies.append(s.energy_j)
        powers.append(s.power_w)
    assert all(e1 > e0 for e0, e1 in zip(energies, energies[1:], strict=False))
    mean_rate = (energies[-1] - energies[0]) / (3 * 47)
    assert mean_rate == pytest.approx(85 + 5.8 * 62, rel=1e-9)
    assert abs(sum(powers[:-1]) / len(powers[:-1]) - mean_rate) < 10.0


def test_seeds_differ() -> None:
    a = FakeBackend(devices=2, seed=1, clock=Clock(50.0)).sample()
    b = FakeBackend(devices=2, seed=2, clock=Clock(50.0)).sample()
    assert {s.uuid for s in a}.isdisjoint({s.uuid for s in b})
    assert [s.util_pct for s in a] != [s.util_pct for s in b]


def test_values_move_and_stay_plausible_over_ten_minutes() -> None:
    clock = Clock(1_700_000_000.0)
    backend = FakeBackend(devices=2, seed=3, clock=clock)
    utils, mems = set(), set()
    for step in range(600):
        clock.t = 1_700_000_000.0 + step
        for s in backend.sample():
            assert 0 <= s.util_pct <= 100
            assert 0 <= s.mem_util_pct <= 100
            assert 0 < s.mem_used_bytes < FAKE_MEM_TOTAL_BYTES
            assert 25 <= s.temperature_c <= 90
            assert 0 < s.power_w <= s.power_limit_w
            assert s.sm_clock_mhz in (345.0,) or 1410 <= s.sm_clock_mhz <= 1980
            assert s.fan_pct is None if s.index % 2 else 30 <= s.fan_pct <= 80
            assert s.simulated
            utils.add(s.util_pct)
            mems.add(s.mem_used_bytes)
    assert len(utils) > 40
    assert len(mems) > 100


def test_uuid_shape_and_labels() -> None:
    backend = FakeBackend(devices=8, seed=0)
    assert backend.device_count() == 8
    assert len(set(backend.uuids)) == 8
    for u in backend.uuids:
        assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", u)
    assert backend.simulated is True
    assert "simulated" in backend.name
    assert FakeBackend(devices=0).sample() == []


def test_set_processes_puts_real_pids_on_a_device() -> None:
    backend = FakeBackend(
        devices=2, seed=0, clock=Clock(10.0), processes={1: [(4321, 1024), (4322, None)]}
    )
    a, b = backend.sample()
    assert a.processes == (GpuProcess(900000, a.mem_used_bytes - 512 * 1024 * 1024),)
    assert b.processes == (GpuProcess(4321, 1024), GpuProcess(4322, None))
    backend.set_processes(0, [])
    assert backend.sample()[0].processes == ()
    with pytest.raises(IndexError):
        backend.set_processes(5, [])


def test_negative_device_count_rejected() -> None:
    with pytest.raises(ValueError):
        FakeBackend(devices=-1)
