from __future__ import annotations

import pytest

from mudpuppy_monitor.gpu.backends import open_backend
from mudpuppy_monitor.gpu.base import BackendUnavailable
from mudpuppy_monitor.gpu.nvidia import NvidiaBackend
from mudpuppy_monitor.gpu.records import GpuProcess
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml


def clock() -> float:
    return 1_700_000_000.5


def backend_for(*devices: FakeNvDevice, **kw) -> tuple[NvidiaBackend, object]:
    nv = make_fake_pynvml(list(devices) or None, **kw)
    return NvidiaBackend(module=nv, clock=clock), nv


def test_sample_converts_units_exactly() -> None:
    dev = FakeNvDevice(compute=[(4242, 10_737_418_240)])
    backend, _ = backend_for(dev)
    (s,) = backend.sample()
    assert s.index == 0
    assert s.name == "NVIDIA H100 80GB HBM3"
    assert s.uuid == "GPU-11111111-2222-3333-4444-555555555555"
    assert s.t == 1_700_000_000.5
    assert s.util_pct == 87.0
    assert s.mem_util_pct == 41.0
    assert s.mem_used_bytes == 42_949_672_960  # v2: without the driver's reservation
    assert s.mem_total_bytes == 85_520_809_984
    assert s.temperature_c == 64.0
    assert s.power_w == 312.456  # 312456 mW
    assert s.power_limit_w == 700.0  # 700000 mW
    assert s.sm_clock_mhz == 1980.0
    assert s.mem_clock_mhz == 2619.0
    assert s.fan_pct == 52.0  # the fastest of two fans (45, 52)
    assert s.processes == (GpuProcess(4242, 10_737_418_240),)
    assert s.simulated is False


def test_library_not_found_at_init_is_unavailable_with_reason() -> None:
    nv = make_fake_pynvml(init_error="LIBRARY_NOT_FOUND")
    with pytest.raises(BackendUnavailable, match=r"^NVML library not found \(no NVIDIA driver\)$"):
        NvidiaBackend(module=nv)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("DRIVER_NOT_LOADED", "NVIDIA driver not loaded"),
        (
            "LIB_RM_VERSION_MISMATCH",
            "NVML and kernel driver versions differ (reboot after a driver upgrade)",
        ),
        ("NO_PERMISSION", "no permission to open the NVIDIA driver"),
        ("UNKNOWN", "nvmlInit failed: Unknown"),
    ],
)
def test_init_errors_become_none_backend_not_exceptions(error: str, reason: str) -> None:
    backend = open_backend("nvidia", nvidia_module=make_fake_pynvml(init_error=error))
    assert backend.kind == "none"
    assert backend.reason == f"nvidia: {reason}"
    assert backend.sample() == []


def test_unsupported_fan_and_power_are_none_and_never_asked_again() -> None:
    passive = FakeNvDevice(fans=None, power_supported=False)
    backend, nv = backend_for(passive)
    for _ in range(3):
        (s,) = backend.sample()
        assert s.fan_pct is None
        assert s.power_w is None
        assert s.power_limit_w is None
        assert s.util_pct == 87.0  # the rest is unaffected
    calls = nv.calls
    assert calls["nvmlDeviceGetPowerUsage"] == 1
    assert calls["nvmlDeviceGetEnforcedPowerLimit"] == 1
    assert calls["nvmlDeviceGetNumFans"] == 1  # 0 fans: the v2 path gives up at once
    assert calls["nvmlDeviceGetFanSpeed_v2"] == 0
    assert calls["nvmlDeviceGetFanSpeed"] == 1  # the fallback, asked once
    assert calls["nvmlDeviceGetUtilizationRates"] == 3
    assert backend.reader.known_unsupported(0) == ["fan", "fan_v2", "power", "power_limit"]
    assert backend.reader.errors == 0


def test_memory_v2_function_not_found_falls_back_to_v1_once() -> None:
    old_driver = FakeNvDevice(has_memory_v2=False)
    backend, nv = backend_for(old_driver)
    for _ in range(3):
        (s,) = backend.sample()
        # v1 "used" includes the reservation: 42_949_672_960 + 566_231_040
        assert s.mem_used_bytes == 43_515_904_000
        assert s.mem_total_bytes == 85_520_809_984
    assert nv.calls["nvmlDeviceGetMemoryInfo_v2"] == 1
    assert nv.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_binding_without_memory_v2_uses_v1_without_asking() -> None:
    backend, nv = backend_for(FakeNvDevice(), with_memory_v2_binding=False)
    (s,) = backend.sample()
    assert s.mem_used_bytes == 43_515_904_000
    assert nv.calls["nvmlDeviceGetMemoryInfo_v2"] == 0


def test_temperature_v_missing_falls_back_to_deprecated_call() -> None:
    backend, nv = backend_for(FakeNvDevice(has_temperature_v=False, temperature=71))
    for _ in range(2):
        (s,) = backend.sample()
        assert s.temperature_c == 71.0
    assert nv.calls["nvmlDeviceGetTemperatureV"] == 1
    assert nv.calls["nvmlDeviceGetTemperature"] == 2


def test_temperature_v_preferred_when_present() -> None:
    backend, nv = backend_for(FakeNvDevice())
    backend.sample()
    assert nv.calls["nvmlDeviceGetTemperatureV"] == 1
    assert nv.calls["nvmlDeviceGetTemperature"] == 0


def test_processes_compute_and_graphics_merged_by_pid_with_none_memory() -> None:
    dev = FakeNvDevice(
        compute=[(100, 1_000_000_000), (200, None), (400, 2**64 - 1)],
        graphics=[(100, 1_000_000_000), (300, 5_242_880), (200, 7_340_032)],
    )
    backend, _ = backend_for(dev)
    (s,) = backend.sample()
    assert s.processes == (
        GpuProcess(100, 1_000_000_000),  # in both lists: counted once, not summed
        GpuProcess(200, 7_340_032),  # None in one list, known in the other
        GpuProcess(400, None),  # NVML_VALUE_NOT_AVAILABLE passed through by old bindings
        GpuProcess(300, 5_242_880),
    )


def test_old_driver_process_lists_fall_back_to_v2() -> None:
    dev = FakeNvDevice(has_processes_v3=False, compute=[(7, None)], graphics=[(8, 1024)])
    backend, nv = backend_for(dev)
    for _ in range(2):
        (s,) = backend.sample()
        assert s.processes == (GpuProcess(7, None), GpuProcess(8, 1024))
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses"] == 1
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 2
    assert nv.calls["nvmlDeviceGetGraphicsRunningProcesses_v2"] == 2


def test_bytes_names_from_old_bindings_are_decoded() -> None:
    backend, _ = backend_for(FakeNvDevice(name="Tesla V100-SXM2-16GB"), bytes_strings=True)
    (s,) = backend.sample()
    assert s.name == "Tesla V100-SXM2-16GB"
    assert s.uuid == "GPU-11111111-2222-3333-4444-555555555555"


def test_transient_errors_are_counted_and_retried_not_remembered() -> None:
    dev = FakeNvDevice()
    backend, nv = backend_for(dev)
    dev.lost = True
    (s,) = backend.sample()
    assert (s.util_pct, s.mem_used_bytes, s.power_w, s.fan_pct) == (None, None, None, None)
    assert s.processes == ()
    assert backend.reader.errors > 0
    assert "GpuIsLost" in (backend.reader.last_error or "")
    assert backend.reader.unsupported == set()
    dev.lost = False
    (s,) = backend.sample()
    assert s.util_pct == 87.0
    assert s.power_w == 312.456
    assert nv.calls["nvmlDeviceGetMemoryInfo"] == 0  # a transient v2 error did not fall back


def test_two_devices_one_passive() -> None:
    active = FakeNvDevice(uuid="GPU-a", fans=[60])
    passive = FakeNvDevice(uuid="GPU-b", fans=None, name="NVIDIA H200")
    backend, _ = backend_for(active, passive)
    assert backend.device_count() == 2
    assert backend.device_names == ("NVIDIA H100 80GB HBM3", "NVIDIA H200")
    a, b = backend.sample()
    assert (a.index, a.uuid, a.fan_pct) == (0, "GPU-a", 60.0)
    assert (b.index, b.uuid, b.fan_pct) == (1, "GPU-b", None)
    assert backend.reader.known_unsupported(0) == []


def test_close_shuts_down_once_and_sample_after_close_reopens() -> None:
    backend, nv = backend_for(FakeNvDevice())
    assert nv.calls["nvmlInit"] == 1
    backend.close()
    backend.close()
    assert nv.calls["nvmlShutdown"] == 1
    (s,) = backend.sample()
    assert s.util_pct == 87.0
    assert nv.calls["nvmlInit"] == 2
    backend.close()
    assert nv.calls["nvmlShutdown"] == 2


def test_handles_are_cached() -> None:
    backend, nv = backend_for(FakeNvDevice(), FakeNvDevice(uuid="GPU-2"))
    for _ in range(5):
        backend.sample()
    assert nv.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert nv.calls["nvmlDeviceGetUUID"] == 2
    assert nv.calls["nvmlDeviceGetName"] == 2


def test_real_pynvml_without_driver_is_unavailable() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present on this host")
    with pytest.raises(BackendUnavailable, match="NVML library not found"):
        NvidiaBackend()


def test_energy_counter_in_joules_and_not_asked_again_where_unsupported() -> None:
    counting = FakeNvDevice(energy_mj=5_321_987_654, energy_step_mj=250_125)
    pre_volta = FakeNvDevice(uuid="GPU-old", energy_mj=None)
    backend, nv = backend_for(counting, pre_volta)
    first, old = backend.sample()
    assert first.energy_j == 5_321_987.654  # mJ / 1000
    assert old.energy_j is None
    second, old = backend.sample()
    assert second.energy_j == pytest.approx(5_321_987.654 + 250.125, abs=1e-9)
    assert old.energy_j is None
    # NotSupported is remembered per device: the old card was asked once, the other every time
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3
    assert backend.reader.known_unsupported(1) == ["energy"]
    assert second.to_dict()["energy_j"] == second.energy_j


def test_energy_not_available_sentinel_and_missing_binding_read_as_none() -> None:
    # an old binding passes NVML_VALUE_NOT_AVAILABLE (2^64-1) through instead of raising
    backend, _ = backend_for(FakeNvDevice(energy_mj=2**64 - 1))
    assert backend.sample()[0].energy_j is None
    nv = make_fake_pynvml()
    del nv.nvmlDeviceGetTotalEnergyConsumption  # a binding that predates the call
    backend = NvidiaBackend(module=nv, clock=clock)
    assert backend.sample()[0].energy_j is None
    assert backend.reader.known_unsupported(0) == ["energy"]
    assert backend.reader.errors == 0


def test_transient_energy_error_gives_none_once_and_is_retried() -> None:
    dev = FakeNvDevice()
    backend, nv = backend_for(dev)
    dev.lost = True
    assert backend.sample()[0].energy_j is None
    dev.lost = False
    assert backend.sample()[0].energy_j == 5_321_987.654
    assert backend.reader.known_unsupported(0) == []


def test_without_a_driver_the_bindings_are_not_even_imported() -> None:
    """A daemon on a machine without NVIDIA's driver learns it from one dlopen, not from
    importing nvidia-ml-py (most of the cost of probing for GPUs at start)."""
    import ctypes
    import subprocess
    import sys

    pytest.importorskip("pynvml")
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        pass
    else:
        pytest.skip("an NVIDIA driver is present on this host")
    code = (
        "import sys\n"
        "from mudpuppy_monitor.gpu.backends import open_backend\n"
        "b = open_backend('nvidia')\n"
        "print(b.kind, '|', b.reason, '|', 'pynvml' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "none | nvidia: NVML library not found (no NVIDIA driver) | False"
