from __future__ import annotations

import logging

import pytest

from mudpuppy_monitor.gpu import GpuBackend, open_backend
from tests.fake_amdsmi import FakeAmdDevice, install_key_error_import, make_fake_amdsmi
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml, no_nvidia_driver_here


def gpu_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mudpuppy_monitor.gpu"]


@pytest.mark.skipif(not no_nvidia_driver_here(), reason="this host has an NVIDIA driver")
def test_auto_on_this_machine_is_none_with_the_reason_in_one_log_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.gpu")
    backend = open_backend("auto")
    assert isinstance(backend, GpuBackend)
    assert (backend.kind, backend.name, backend.simulated) == ("none", "none", False)
    assert backend.reason.startswith("nvidia: NVML library not found (no NVIDIA driver); amd: ")
    assert backend.device_count() == 0
    assert backend.sample() == []
    backend.close()
    assert gpu_lines(caplog) == [f"gpu: none ({backend.reason})"]


def test_auto_reports_both_reasons(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.gpu")
    backend = open_backend(
        "auto",
        nvidia_module=make_fake_pynvml(init_error="LIBRARY_NOT_FOUND"),
        amd_module=make_fake_amdsmi(init_error=4),
    )
    assert backend.kind == "none"
    reason = (
        "nvidia: NVML library not found (no NVIDIA driver); "
        "amd: amdsmi_init failed: An error occured with code: 4"
    )
    assert backend.reason == reason
    assert gpu_lines(caplog) == [f"gpu: none ({reason})"]


def test_auto_with_amd_import_key_error(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.gpu")
    install_key_error_import(monkeypatch)
    backend = open_backend("auto", nvidia_module=make_fake_pynvml(init_error="DRIVER_NOT_LOADED"))
    assert backend.kind == "none"
    assert backend.reason == (
        "nvidia: NVIDIA driver not loaded; amd: amdsmi installed but its library did not load "
        "(KeyError: 'libamd_smi.so'; no ROCm?)"
    )
    assert len(gpu_lines(caplog)) == 1


def test_auto_prefers_nvidia_and_does_not_touch_amd(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.gpu")
    am = make_fake_amdsmi()
    backend = open_backend(
        "auto",
        nvidia_module=make_fake_pynvml([FakeNvDevice(), FakeNvDevice(uuid="GPU-2")]),
        amd_module=am,
    )
    assert backend.kind == "nvidia"
    assert backend.reason == (
        "nvidia, 2 device(s): NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3 "
        "(amd: not tried, nvidia found first)"
    )
    assert gpu_lines(caplog) == [f"gpu: {backend.reason}"]
    assert sum(am.calls.values()) == 0
    backend.close()


def test_auto_falls_through_to_amd(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.gpu")
    backend = open_backend(
        "auto",
        nvidia_module=make_fake_pynvml(init_error="LIBRARY_NOT_FOUND"),
        amd_module=make_fake_amdsmi([FakeAmdDevice()]),
    )
    assert backend.kind == "amd"
    assert backend.reason == (
        "amd, 1 device(s): AMD Instinct MI300X (nvidia: NVML library not found (no NVIDIA driver))"
    )
    assert gpu_lines(caplog) == [f"gpu: {backend.reason}"]
    assert backend.sample()[0].util_pct == 93.0


def test_library_without_devices_is_skipped() -> None:
    nv = make_fake_pynvml([])
    backend = open_backend("auto", nvidia_module=nv, amd_module=make_fake_amdsmi([]))
    assert backend.kind == "none"
    assert backend.reason == (
        "nvidia: library loaded but no devices; amd: library loaded but no devices"
    )
    assert nv.calls["nvmlShutdown"] == 1  # released, not leaked


def test_a_binding_that_raises_something_odd_is_contained() -> None:
    nv = make_fake_pynvml()

    def broken() -> None:
        raise RuntimeError("segfault averted")

    nv.nvmlInit = broken
    backend = open_backend("nvidia", nvidia_module=nv)
    assert backend.kind == "none"
    assert backend.reason == "nvidia: unexpected RuntimeError: segfault averted"


def test_explicit_vendor_missing_is_none_not_an_exception() -> None:
    backend = open_backend("nvidia", nvidia_module=make_fake_pynvml(init_error="LIBRARY_NOT_FOUND"))
    assert backend.kind == "none"
    assert backend.reason == "nvidia: NVML library not found (no NVIDIA driver)"


def test_none_and_fake() -> None:
    none = open_backend("none")
    assert (none.kind, none.sample(), none.reason) == ("none", [], "GPU sampling turned off")
    fake = open_backend("fake", fake_devices=3, clock=lambda: 100.0)
    assert fake.kind == "fake"
    assert fake.simulated is True
    assert "simulated" in fake.name
    assert "not real hardware" in fake.reason
    samples = fake.sample()
    assert len(samples) == 3
    assert all(s.simulated and "fake" in s.name for s in samples)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown GPU backend 'cuda'"):
        open_backend("cuda")
