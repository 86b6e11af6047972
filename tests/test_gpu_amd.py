from __future__ import annotations

import importlib.util

import pytest

from mudpuppy_monitor.gpu.amd import AmdBackend, byte_count, value
from mudpuppy_monitor.gpu.backends import open_backend
from mudpuppy_monitor.gpu.base import BackendUnavailable
from mudpuppy_monitor.gpu.records import GpuProcess
from tests.fake_amdsmi import NA, FakeAmdDevice, install_key_error_import, make_fake_amdsmi

MIB = 1024 * 1024


def clock() -> float:
    return 1_700_000_123.25


def backend_for(*devices: FakeAmdDevice, **kw) -> tuple[AmdBackend, object]:
    am = make_fake_amdsmi(list(devices) or None, **kw)
    return AmdBackend(module=am, clock=clock), am


def test_mi300_sample_converts_units_exactly() -> None:
    dev = FakeAmdDevice(processes=[(5151, 34_359_738_368, 34_361_835_520)])
    backend, _ = backend_for(dev)
    (s,) = backend.sample()
    assert (s.index, s.name, s.uuid, s.t) == (
        0,
        "AMD Instinct MI300X",
        "5eff74a1-0000-1000-80b6-c3d2a1b0f9e8",
        1_700_000_123.25,
    )
    assert s.util_pct == 93.0
    assert s.mem_util_pct == 38.0
    assert s.mem_used_bytes == 65_536 * MIB == 68_719_476_736  # MiB -> bytes
    assert s.mem_total_bytes == 196_592 * MIB == 206_141_652_992
    assert s.temperature_c == 71.0  # no edge sensor: hotspot
    assert s.power_w == 612.0  # current_socket_power; average is "N/A"
    assert s.power_limit_w == 750.0
    assert s.sm_clock_mhz == 2100.0
    assert s.mem_clock_mhz == 1300.0
    assert s.fan_pct is None
    assert s.processes == (GpuProcess(5151, 34_359_738_368),)  # vram_mem, not mem


def test_older_part_average_power_edge_temperature_and_fan() -> None:
    dev = FakeAmdDevice(
        market_name="AMD Instinct MI210",
        current_socket_power=NA,
        average_socket_power=220,
        edge_temp=55,
        fan_speed=128,
        fan_max=255,
    )
    backend, am = backend_for(dev)
    for _ in range(3):
        (s,) = backend.sample()
        assert s.power_w == 220.0
        assert s.temperature_c == 55.0
        assert s.fan_pct == 50.2  # 128 of 255
    assert am.calls["amdsmi_get_gpu_fan_speed_max"] == 1  # cached
    assert am.calls["amdsmi_get_temp_metric"] == 3  # edge only: hotspot never needed


def test_na_strings_become_none() -> None:
    dev = FakeAmdDevice(
        gfx_activity=NA, umc_activity=NA, vram_used_mib=NA, gfx_clock=NA, power_limit=NA
    )
    backend, _ = backend_for(dev)
    (s,) = backend.sample()
    assert s.util_pct is None
    assert s.mem_util_pct is None
    assert s.mem_used_bytes is None
    assert s.mem_total_bytes == 196_592 * MIB
    assert s.sm_clock_mhz is None
    assert s.power_limit_w == 750.0  # from amdsmi_get_power_cap_info, in microwatts


def test_both_power_keys_na_gives_none() -> None:
    backend, _ = backend_for(FakeAmdDevice(current_socket_power=NA, average_socket_power=NA))
    (s,) = backend.sample()
    assert s.power_w is None


def test_unsupported_sensors_are_asked_once() -> None:
    backend, am = backend_for(FakeAmdDevice())  # no edge sensor, no fan
    for _ in range(4):
        backend.sample()
    # first sample: edge (NOT_SUPPORTED) + hotspot; then hotspot only
    assert am.calls["amdsmi_get_temp_metric"] == 5
    assert am.calls["amdsmi_get_gpu_fan_speed_max"] == 1
    assert am.calls["amdsmi_get_gpu_fan_speed"] == 0
    assert backend.reader.known_unsupported(0) == ["fan", "temperature_edge"]


def test_rocm6_shapes_cur_clk_and_process_handles() -> None:
    dev = FakeAmdDevice(processes=[(11, 1_048_576, 2_097_152), (12, NA, 4_194_304)])
    backend, am = backend_for(dev, version=6, process_list_shape="handles")
    (s,) = backend.sample()
    assert s.sm_clock_mhz == 2100.0  # "cur_clk"
    assert s.mem_clock_mhz == 1300.0
    # vram_mem "N/A" -> the process's total "mem"
    assert s.processes == (GpuProcess(11, 1_048_576), GpuProcess(12, 4_194_304))
    assert am.calls["amdsmi_get_gpu_process_info"] == 2


def test_rocm7_dict_process_list() -> None:
    dev = FakeAmdDevice(processes=[(21, 8_388_608, 9_000_000), (22, NA, NA)])
    backend, am = backend_for(dev, version=7, process_list_shape="dicts")
    (s,) = backend.sample()
    assert s.processes == (GpuProcess(21, 8_388_608), GpuProcess(22, None))
    assert am.calls["amdsmi_get_gpu_process_info"] == 0


def test_import_key_error_without_rocm_is_a_reason_not_an_exception(monkeypatch, capsys) -> None:
    install_key_error_import(monkeypatch)
    with pytest.raises(BackendUnavailable) as exc:
        AmdBackend()
    assert str(exc.value) == (
        "amdsmi installed but its library did not load (KeyError: 'libamd_smi.so'; no ROCm?)"
    )
    backend = open_backend("amd")
    assert backend.kind == "none"
    assert backend.reason.startswith("amd: amdsmi installed but its library did not load")
    # the binding's own message does not reach the user's terminal
    assert "amd-smi-lib" not in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("amdsmi") is not None, reason="amdsmi installed")
def test_amdsmi_not_installed() -> None:
    with pytest.raises(BackendUnavailable, match="^amdsmi not installed$"):
        AmdBackend()


def test_init_failure_is_unavailable() -> None:
    am = make_fake_amdsmi(init_error=4)  # FAIL_LOAD_MODULE: amdgpu driver not loaded
    backend = open_backend("amd", amd_module=am)
    assert backend.kind == "none"
    assert backend.reason == "amd: amdsmi_init failed: An error occured with code: 4"


def test_busy_is_transient_and_retried() -> None:
    dev = FakeAmdDevice()
    backend, _ = backend_for(dev)
    dev.busy = True
    (s,) = backend.sample()
    assert (s.util_pct, s.mem_used_bytes, s.temperature_c, s.power_w) == (None, None, None, None)
    assert backend.reader.errors > 0
    dev.busy = False
    (s,) = backend.sample()
    assert s.util_pct == 93.0
    assert s.temperature_c == 71.0


def test_close_and_reopen() -> None:
    backend, am = backend_for(FakeAmdDevice())
    backend.close()
    backend.close()
    assert am.calls["amdsmi_shut_down"] == 1
    (s,) = backend.sample()
    assert s.util_pct == 93.0
    assert am.calls["amdsmi_init"] == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, 5.0),
        ("7", 7.0),
        ("N/A", None),
        (None, None),
        (True, None),
        ({"value": 3, "unit": "W"}, 3.0),
        ("garbage", None),
    ],
)
def test_value(raw, expected) -> None:
    assert value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "unit", "expected"),
    [
        (2, "MiB", 2 * MIB),
        ({"value": 3, "unit": "GiB"}, "B", 3 * 1024**3),
        ({"value": 1, "unit": "furlong"}, "B", None),
        ("N/A", "MiB", None),
        (4096, "B", 4096),
    ],
)
def test_byte_count(raw, unit, expected) -> None:
    assert byte_count(raw, unit) == expected
