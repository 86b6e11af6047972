"""A fake `amdsmi` module for tests, in the shapes of the ROCm 6.x and 7.x Python bindings.

Reproduced behaviour:
- without libamd_smi.so, `import amdsmi` prints a message and raises KeyError (KeyErrorOnImport);
- errors are AmdSmiLibraryException(err_code) with get_error_code(); NOT_SUPPORTED is 2;
- values the device does not have are the string "N/A" (0xFFFF in the C struct);
- amdsmi_get_gpu_vram_usage reports MiB; process memory is bytes; power is W;
- MI300-class parts fill current_socket_power and leave average_socket_power "N/A", older
  parts the reverse; MI300 has no edge temperature sensor (NOT_SUPPORTED), only hotspot;
- clock info: "cur_clk" in 6.x, "clk" in 7.x;
- process list: 6.0/6.1 return process handles to pass to amdsmi_get_gpu_process_info; 6.2+
  and 7.x return dicts with pid, mem, memory_usage {gtt_mem, cpu_mem, vram_mem} (bytes).
- energy: `amdsmi_get_energy_count` returns {counter key: counts, "counter_resolution": uJ per
  count (float), "timestamp": ns}; the counter key is "power" in bindings before 6.2.1 and
  "energy_accumulator" after (`energy_key`); NOT_SUPPORTED in a VM guest (`energy_count=None`).
  The counter grows by `energy_step` counts after each read.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUS_INVAL = 1
STATUS_NOT_SUPPORTED = 2
STATUS_BUSY = 30  # transient: retried by the backend
STATUS_NOT_INIT = 32

NA = "N/A"


@dataclass
class FakeAmdDevice:
    market_name: str = "AMD Instinct MI300X"
    uuid: str = "5eff74a1-0000-1000-80b6-c3d2a1b0f9e8"
    gfx_activity: Any = 93  # %
    umc_activity: Any = 38
    vram_total_mib: Any = 196_592
    vram_used_mib: Any = 65_536
    edge_temp: int | None = None  # None: no edge sensor (NOT_SUPPORTED), as on MI300
    hotspot_temp: int | None = 71
    current_socket_power: Any = 612  # W
    average_socket_power: Any = NA
    power_limit: Any = 750  # W
    power_cap_uw: int = 750_000_000  # amdsmi_get_power_cap_info: microwatts
    gfx_clock: Any = 2100  # MHz
    mem_clock: Any = 1300
    fan_speed: int | None = None  # 0..fan_max; None: no fan (NOT_SUPPORTED)
    fan_max: int = 255
    busy: bool = False  # every metric call raises STATUS_BUSY (transient)
    energy_count: Any = 123_456_789_012  # counts; None: NOT_SUPPORTED (a VM guest)
    energy_resolution_uj: Any = 15.3  # microjoules per count
    energy_step: int = 0  # counts added after each read
    # (pid, vram_mem bytes, mem bytes)
    processes: list[tuple[int, Any, Any]] = field(default_factory=list)


class KeyErrorOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Install in sys.meta_path: `import amdsmi` then prints and raises KeyError, as the real
    binding does when libamd_smi.so is missing."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "amdsmi":
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        print("Unable to find amdsmi library try installing amd-smi-lib from your package manager")
        raise KeyError("libamd_smi.so")


def make_fake_amdsmi(
    devices: list[FakeAmdDevice] | None = None,
    *,
    version: int = 7,
    process_list_shape: str | None = None,
    init_error: int | None = None,
    energy_key: str = "energy_accumulator",
) -> types.ModuleType:
    """`version` picks the clock key (6: cur_clk, 7: clk); `process_list_shape` is "handles"
    (6.0/6.1) or "dicts" (6.2+/7.x; the default for both versions); `energy_key` names the
    energy counter ("power" before amdsmi 6.2.1)."""
    devs = list(devices if devices is not None else [FakeAmdDevice()])
    shape = process_list_shape or "dicts"
    mod = types.ModuleType("amdsmi")
    mod.calls = Counter()  # type: ignore[attr-defined]
    mod.devices = devs  # type: ignore[attr-defined]
    state = {"init": False}

    class AmdSmiException(Exception):
        pass

    class AmdSmiLibraryException(AmdSmiException):
        def __init__(self, err_code: int) -> None:
            err_code = abs(err_code)
            super().__init__(err_code)
            self.err_code = err_code

        def get_error_code(self) -> int:
            return self.err_code

        def __str__(self) -> str:
            return f"An error occured with code: {self.err_code}"

    class AmdSmiParameterException(AmdSmiException):
        pass

    class Handle:  # amdsmi_processor_handle: an opaque pointer
        def __init__(self, index: int) -> None:
            self.index = index

    class ProcessHandle:  # amdsmi_process_handle_t (6.0/6.1)
        def __init__(self, pid: int) -> None:
            self.value = pid

    mod.AmdSmiException = AmdSmiException  # type: ignore[attr-defined]
    mod.AmdSmiLibraryException = AmdSmiLibraryException  # type: ignore[attr-defined]
    mod.AmdSmiParameterException = AmdSmiParameterException  # type: ignore[attr-defined]
    mod.AmdSmiInitFlags = types.SimpleNamespace(INIT_ALL_PROCESSORS=0xFFFFFFFF, INIT_AMD_GPUS=2)  # type: ignore[attr-defined]
    mod.AmdSmiTemperatureType = types.SimpleNamespace(EDGE=0, HOTSPOT=1, JUNCTION=1, VRAM=2)  # type: ignore[attr-defined]
    mod.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0, MAX=1)  # type: ignore[attr-defined]
    mod.AmdSmiClkType = types.SimpleNamespace(SYS=0, GFX=0, DF=1, DCEF=2, SOC=3, MEM=4)  # type: ignore[attr-defined]

    def check(fn: str, h: Any = None) -> FakeAmdDevice:
        mod.calls[fn] += 1
        if not state["init"]:
            raise AmdSmiLibraryException(STATUS_NOT_INIT)
        if h is None:
            return None  # type: ignore[return-value]
        if not isinstance(h, Handle):
            raise AmdSmiParameterException(h)
        d = devs[h.index]
        if d.busy:
            raise AmdSmiLibraryException(STATUS_BUSY)
        return d

    def amdsmi_init(flags=0xFFFFFFFF):
        mod.calls["amdsmi_init"] += 1
        if init_error is not None:
            raise AmdSmiLibraryException(init_error)
        state["init"] = True

    def amdsmi_shut_down():
        mod.calls["amdsmi_shut_down"] += 1
        if not state["init"]:
            raise AmdSmiLibraryException(STATUS_NOT_INIT)
        state["init"] = False

    def amdsmi_get_processor_handles():
        check("amdsmi_get_processor_handles")
        return [Handle(i) for i in range(len(devs))]

    def amdsmi_get_gpu_asic_info(processor_handle):
        d = check("amdsmi_get_gpu_asic_info", processor_handle)
        return {"market_name": d.market_name, "vendor_id": "0x1002", "device_id": "0x74a1"}

    def amdsmi_get_gpu_device_uuid(processor_handle):
        return check("amdsmi_get_gpu_device_uuid", processor_handle).uuid

    def amdsmi_get_gpu_activity(processor_handle):
        d = check("amdsmi_get_gpu_activity", processor_handle)
        return {"gfx_activity": d.gfx_activity, "umc_activity": d.umc_activity, "mm_activity": NA}

    def amdsmi_get_gpu_vram_usage(processor_handle):
        d = check("amdsmi_get_gpu_vram_usage", processor_handle)
        return {"vram_total": d.vram_total_mib, "vram_used": d.vram_used_mib}

    def amdsmi_get_temp_metric(processor_handle, sensor_type, metric):
        d = check("amdsmi_get_temp_metric", processor_handle)
        temp = d.edge_temp if sensor_type == 0 else d.hotspot_temp if sensor_type == 1 else None
        if temp is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        return temp

    def amdsmi_get_power_info(processor_handle, sensor_ind=0):
        d = check("amdsmi_get_power_info", processor_handle)
        return {
            "current_socket_power": d.current_socket_power,
            "average_socket_power": d.average_socket_power,
            "gfx_voltage": NA,
            "soc_voltage": NA,
            "mem_voltage": NA,
            "power_limit": d.power_limit,
        }

    def amdsmi_get_power_cap_info(processor_handle):
        d = check("amdsmi_get_power_cap_info", processor_handle)
        return {"power_cap": d.power_cap_uw, "default_power_cap": d.power_cap_uw, "dpm_cap": 0}

    def amdsmi_get_energy_count(processor_handle):
        d = check("amdsmi_get_energy_count", processor_handle)
        if d.energy_count is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        count = d.energy_count
        if isinstance(count, int):
            d.energy_count = count + d.energy_step
        return {
            energy_key: count,
            "counter_resolution": d.energy_resolution_uj,
            "timestamp": 1_764_330_000_000_000_000 + mod.calls["amdsmi_get_energy_count"],
        }

    def amdsmi_get_clock_info(processor_handle, clock_type):
        d = check("amdsmi_get_clock_info", processor_handle)
        clk = d.mem_clock if clock_type == 4 else d.gfx_clock
        if version >= 7:
            return {
                "clk": clk,
                "min_clk": 500,
                "max_clk": 2100,
                "clk_locked": NA,
                "clk_deep_sleep": NA,
            }
        return {"cur_clk": clk, "min_clk": 500, "max_clk": 2100, "sleep_clk": 0}

    def amdsmi_get_gpu_fan_speed(processor_handle, sensor_idx):
        d = check("amdsmi_get_gpu_fan_speed", processor_handle)
        if d.fan_speed is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        return d.fan_speed

    def amdsmi_get_gpu_fan_speed_max(processor_handle, sensor_idx):
        d = check("amdsmi_get_gpu_fan_speed_max", processor_handle)
        if d.fan_speed is None:
            raise AmdSmiLibraryException(STATUS_NOT_SUPPORTED)
        return d.fan_max

    def _info(pid, vram, mem):
        return {
            "name": "python3",
            "pid": pid,
            "mem": mem,
            "engine_usage": {"gfx": 0, "enc": 0},
            "memory_usage": {"gtt_mem": 2_097_152, "cpu_mem": 0, "vram_mem": vram},
            "cu_occupancy": NA,
        }

    def amdsmi_get_gpu_process_list(processor_handle):
        d = check("amdsmi_get_gpu_process_list", processor_handle)
        if shape == "handles":
            return [ProcessHandle(pid) for pid, _, _ in d.processes]
        return [_info(pid, vram, mem) for pid, vram, mem in d.processes]

    def amdsmi_get_gpu_process_info(processor_handle, process):
        d = check("amdsmi_get_gpu_process_info", processor_handle)
        for pid, vram, mem in d.processes:
            if pid == process.value:
                return _info(pid, vram, mem)
        raise AmdSmiLibraryException(STATUS_INVAL)

    for name, fn in dict(locals()).items():
        if name.startswith("amdsmi_"):
            setattr(mod, name, fn)
    return mod


def install_key_error_import(monkeypatch: Any) -> None:
    """Make `import amdsmi` behave as on a host without ROCm."""
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(sys, "meta_path", [KeyErrorOnImport(), *sys.meta_path])
