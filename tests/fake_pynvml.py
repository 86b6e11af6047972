"""A fake `pynvml` (nvidia-ml-py) module for tests: the same names, signatures, return shapes
and error classes as the real binding (tests/test_gpu_fakes.py checks them against the installed
one), driven by a list of FakeNvDevice. No driver needed.

Reproduced behaviour of the real binding and driver:
- `nvmlInit()` raises NVMLError_LibraryNotFound (value 12) without a driver; calls before init or
  after the last shutdown raise NVMLError_Uninitialized.
- `NVMLError(code)` returns the subclass for the code (`NVMLError_NotSupported` for 3), with
  `.value`; subclasses are named `NVMLError_` + CamelCase of the code name.
- power in mW; memory in bytes; `nvmlDeviceGetMemoryInfo(h, version=nvmlMemory_v2)` calls the
  `_v2` symbol, which old drivers lack (FunctionNotFound, 13); v1 "used" includes reserved memory.
- `nvmlDeviceGetTemperatureV` is missing from old drivers (FunctionNotFound).
- fan and power calls raise NotSupported (3) on passive / some datacenter cards; such cards
  report 0 fans.
- the unversioned process calls are v3 and turn FunctionNotFound into NVMLLibraryMismatchError
  (not an NVMLError) on old drivers; `_v2` still works there. `usedGpuMemory` may be None.
- `nvmlDeviceGetTotalEnergyConsumption` returns an unsigned count of millijoules since the driver
  loaded, and raises NotSupported (3) before Volta (`energy_mj=None`). The fake counter grows by
  `energy_step_mj` after each read, so consecutive reads differ deterministically.
"""

from __future__ import annotations

import ctypes.util
import os
import string
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ERROR_CODES = {
    "UNINITIALIZED": 1,
    "INVALID_ARGUMENT": 2,
    "NOT_SUPPORTED": 3,
    "NO_PERMISSION": 4,
    "ALREADY_INITIALIZED": 5,
    "NOT_FOUND": 6,
    "INSUFFICIENT_SIZE": 7,
    "INSUFFICIENT_POWER": 8,
    "DRIVER_NOT_LOADED": 9,
    "TIMEOUT": 10,
    "IRQ_ISSUE": 11,
    "LIBRARY_NOT_FOUND": 12,
    "FUNCTION_NOT_FOUND": 13,
    "CORRUPTED_INFOROM": 14,
    "GPU_IS_LOST": 15,
    "RESET_REQUIRED": 16,
    "OPERATING_SYSTEM": 17,
    "LIB_RM_VERSION_MISMATCH": 18,
    "IN_USE": 19,
    "MEMORY": 20,
    "NO_DATA": 21,
    "ARGUMENT_VERSION_MISMATCH": 25,
    "UNKNOWN": 999,
}


@dataclass
class FakeNvDevice:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    util_gpu: int = 87
    util_memory: int = 41
    mem_total: int = 85_520_809_984  # bytes
    mem_used: int = 42_949_672_960  # v2 used: without the driver's reservation
    mem_reserved: int = 566_231_040
    temperature: int = 64  # C
    power_mw: int = 312_456
    power_limit_mw: int = 700_000
    sm_clock: int = 1980  # MHz
    mem_clock: int = 2619
    fans: list[int] | None = field(default_factory=lambda: [45, 52])  # None: passive card
    power_supported: bool = True
    has_memory_v2: bool = True
    has_temperature_v: bool = True
    has_processes_v3: bool = True
    energy_mj: int | None = 5_321_987_654  # None: no counter (pre-Volta: NotSupported)
    energy_step_mj: int = 0  # added to the counter after each read
    lost: bool = False  # every call raises GpuIsLost (a transient error, retried)
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)


def no_nvidia_driver_here() -> bool:
    """True where the real NVML cannot load (CI, this project's build machines)."""
    return not os.path.exists("/dev/nvidia0") and ctypes.util.find_library("nvidia-ml") is None


class _Struct:
    """Like the binding's friendly objects: attributes, and a repr for failures."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class FakeHandle:
    def __init__(self, index: int) -> None:
        self.index = index


def _camel(code_name: str) -> str:
    return "NVMLError_" + string.capwords(code_name, "_").replace("_", "")


def make_fake_pynvml(
    devices: list[FakeNvDevice] | None = None,
    *,
    init_error: str | None = None,
    bytes_strings: bool = False,
    with_memory_v2_binding: bool = True,
) -> types.ModuleType:
    """A fresh fake module. `init_error` is an error name ("LIBRARY_NOT_FOUND",
    "DRIVER_NOT_LOADED", ...) that nvmlInit raises. `bytes_strings` makes name/UUID bytes, as
    bindings before the str conversion did. `with_memory_v2_binding=False` gives a binding that
    predates `nvmlMemory_v2` and the `version` argument."""
    devs = list(devices if devices is not None else [FakeNvDevice()])
    mod = types.ModuleType("pynvml")
    mod.calls = Counter()  # type: ignore[attr-defined]
    mod.devices = devs  # type: ignore[attr-defined]
    state = {"refcount": 0}

    class NVMLError(Exception):
        _valClassMapping: dict[int, type] = {}

        def __new__(typ, value):  # noqa: N804 (the binding's spelling)
            if typ == NVMLError:
                typ = NVMLError._valClassMapping.get(value, typ)
            obj = Exception.__new__(typ)
            obj.value = value
            return obj

        def __str__(self) -> str:
            for name, code in ERROR_CODES.items():
                if code == self.value:
                    return name.replace("_", " ").title()
            return f"NVML Error with code {self.value}"

        def __eq__(self, other: object) -> bool:
            return self.value == getattr(other, "value", None)

        __hash__ = None  # type: ignore[assignment]  # the real class defines __eq__ only

    class NVMLLibraryMismatchError(Exception):
        pass

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.NVMLLibraryMismatchError = NVMLLibraryMismatchError  # type: ignore[attr-defined]
    for code_name, code in ERROR_CODES.items():
        setattr(mod, f"NVML_ERROR_{code_name}", code)

        def gen_new(val: int):
            def new(typ, *args):
                return NVMLError.__new__(typ, val)

            return new

        cls = type(_camel(code_name), (NVMLError,), {"__new__": gen_new(code)})
        cls.__module__ = "pynvml"
        setattr(mod, cls.__name__, cls)
        NVMLError._valClassMapping[code] = cls

    mod.NVML_SUCCESS = 0  # type: ignore[attr-defined]
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    mod.NVML_CLOCK_GRAPHICS = 0  # type: ignore[attr-defined]
    mod.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]
    mod.NVML_CLOCK_MEM = 2  # type: ignore[attr-defined]
    mod.nvmlTemperature_v1 = 0x100000C  # type: ignore[attr-defined]
    if with_memory_v2_binding:
        mod.nvmlMemory_v2 = 0x02000028  # type: ignore[attr-defined]

    def err(name: str) -> Exception:
        return NVMLError(ERROR_CODES[name])

    def check(fn: str, handle: Any = None) -> FakeNvDevice | None:
        mod.calls[fn] += 1
        if state["refcount"] == 0:
            raise err("UNINITIALIZED")
        if handle is None:
            return None
        dev = devs[handle.index]
        if dev.lost:
            raise err("GPU_IS_LOST")
        return dev

    def text(value: str) -> Any:
        return value.encode() if bytes_strings else value

    # -- library ---------------------------------------------------------------------------
    def nvmlInit():
        mod.calls["nvmlInit"] += 1
        if init_error is not None:
            raise err(init_error)
        state["refcount"] += 1

    def nvmlShutdown():
        mod.calls["nvmlShutdown"] += 1
        if state["refcount"] == 0:
            raise err("UNINITIALIZED")
        state["refcount"] -= 1

    def nvmlDeviceGetCount():
        check("nvmlDeviceGetCount")
        return len(devs)

    def nvmlDeviceGetHandleByIndex(index):
        check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(devs):
            raise err("INVALID_ARGUMENT")
        return FakeHandle(index)

    def nvmlDeviceGetName(handle):
        return text(check("nvmlDeviceGetName", handle).name)

    def nvmlDeviceGetUUID(handle):
        return text(check("nvmlDeviceGetUUID", handle).uuid)

    # -- metrics ---------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(handle):
        d = check("nvmlDeviceGetUtilizationRates", handle)
        return _Struct(gpu=d.util_gpu, memory=d.util_memory)

    def nvmlDeviceGetMemoryInfo(handle, version=None):
        if not version:
            d = check("nvmlDeviceGetMemoryInfo", handle)
            used = d.mem_used + d.mem_reserved  # v1 counts the reservation as used
            return _Struct(total=d.mem_total, free=d.mem_total - used, used=used)
        d = check("nvmlDeviceGetMemoryInfo_v2", handle)
        if not d.has_memory_v2:
            raise err("FUNCTION_NOT_FOUND")
        free = d.mem_total - d.mem_used - d.mem_reserved
        return _Struct(
            version=version, total=d.mem_total, reserved=d.mem_reserved, free=free, used=d.mem_used
        )

    def nvmlDeviceGetTemperatureV(handle, sensor, version=0x100000C):
        d = check("nvmlDeviceGetTemperatureV", handle)
        if not d.has_temperature_v:
            raise err("FUNCTION_NOT_FOUND")
        return d.temperature

    def nvmlDeviceGetTemperature(handle, sensor):
        return check("nvmlDeviceGetTemperature", handle).temperature

    def nvmlDeviceGetPowerUsage(handle):
        d = check("nvmlDeviceGetPowerUsage", handle)
        if not d.power_supported:
            raise err("NOT_SUPPORTED")
        return d.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(handle):
        d = check("nvmlDeviceGetEnforcedPowerLimit", handle)
        if not d.power_supported:
            raise err("NOT_SUPPORTED")
        return d.power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        d = check("nvmlDeviceGetTotalEnergyConsumption", handle)
        if d.energy_mj is None:
            raise err("NOT_SUPPORTED")
        value = d.energy_mj
        d.energy_mj += d.energy_step_mj
        return value

    def nvmlDeviceGetClockInfo(handle, type):  # noqa: A002 (the binding's name)
        d = check("nvmlDeviceGetClockInfo", handle)
        if type == 1:
            return d.sm_clock
        if type == 2:
            return d.mem_clock
        raise err("INVALID_ARGUMENT")

    def nvmlDeviceGetNumFans(device):
        d = check("nvmlDeviceGetNumFans", device)
        return 0 if d.fans is None else len(d.fans)

    def nvmlDeviceGetFanSpeed(handle):
        d = check("nvmlDeviceGetFanSpeed", handle)
        if d.fans is None:
            raise err("NOT_SUPPORTED")
        return d.fans[0]

    def nvmlDeviceGetFanSpeed_v2(handle, fan):
        d = check("nvmlDeviceGetFanSpeed_v2", handle)
        if d.fans is None:
            raise err("NOT_SUPPORTED")
        if not 0 <= fan < len(d.fans):
            raise err("INVALID_ARGUMENT")
        return d.fans[fan]

    # -- processes -------------------------------------------------------------------------
    def procs(pairs):
        return [
            _Struct(
                pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
            )
            for pid, used in pairs
        ]

    def process_call(fn_name, attr, mode):
        def call(handle):
            d = check(fn_name, handle)
            if mode == "v3" and not d.has_processes_v3:
                raise err("FUNCTION_NOT_FOUND")
            if mode == "unversioned" and not d.has_processes_v3:
                # FunctionNotFound turned into a mismatch by @throwOnVersionMismatch
                raise NVMLLibraryMismatchError(
                    "Unversioned function called and the pyNVML version does not match the NVML"
                    f" lib version. Either use matching pyNVML and NVML lib versions or use a"
                    f" versioned function such as {fn_name}_v2"
                )
            return procs(getattr(d, attr))

        call.__name__ = fn_name
        return call

    funcs = dict(locals())
    for name, fn in funcs.items():
        if name.startswith("nvml"):
            setattr(mod, name, fn)
    for kind, attr in (("Compute", "compute"), ("Graphics", "graphics")):
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        setattr(mod, base, process_call(base, attr, "unversioned"))
        setattr(mod, base + "_v2", process_call(base + "_v2", attr, "v2"))
        setattr(mod, base + "_v3", process_call(base + "_v3", attr, "v3"))
    return mod
