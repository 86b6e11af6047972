"""NVIDIA GPUs through NVML (`import pynvml`, from the `nvidia-ml-py` package).

Init once, cache handles, convert units here (power is mW in NVML), prefer the newer calls and
fall back to the older ones where the driver lacks them. See docs/gpu.md for the decisions.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from mudpuppy_monitor.gpu.base import BackendUnavailable, FieldReader, Unsupported, VendorBackend
from mudpuppy_monitor.gpu.energy import nvml_energy_j
from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample

log = logging.getLogger("mudpuppy_monitor.gpu")

# NVML return codes that mean "this device or driver will never answer this call":
# INVALID_ARGUMENT 2, NOT_SUPPORTED 3, NO_PERMISSION 4, FUNCTION_NOT_FOUND 13,
# ARGUMENT_VERSION_MISMATCH 25. Anything else (GPU lost, timeout, unknown) is retried.
_PERMANENT_CODES = frozenset({2, 3, 4, 13, 25})

_INIT_ERRORS = {
    "NVMLError_LibraryNotFound": "NVML library not found (no NVIDIA driver)",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_LibRmVersionMismatch": "NVML and kernel driver versions differ (reboot after a driver upgrade)",
    "NVMLError_NoPermission": "no permission to open the NVIDIA driver",
}

# NVML_VALUE_NOT_AVAILABLE_ulonglong: older bindings pass it through instead of None
_NOT_AVAILABLE_U64 = 2**64 - 1


@dataclass
class _Device:
    index: int
    handle: Any
    name: str
    uuid: str


def _import_pynvml() -> Any:
    _check_driver()
    try:
        import pynvml
    except Exception as exc:  # ImportError, or a broken install raising anything
        raise BackendUnavailable(
            f"nvidia-ml-py not installed ({type(exc).__name__}: {exc})"
        ) from exc
    return pynvml


def _check_driver() -> None:
    """On Linux, without NVIDIA's driver library there is nothing to import the bindings for:
    say so as nvmlInit would, without importing them (about 90 ms of a daemon's start)."""
    if not sys.platform.startswith("linux") or importlib.util.find_spec("pynvml") is None:
        return  # the import below says what is missing
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # the name the bindings load on Linux
    except OSError:
        raise BackendUnavailable(_INIT_ERRORS["NVMLError_LibraryNotFound"]) from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _optional(module: Any, attr: str) -> Any:
    """A binding function that older nvidia-ml-py releases do not have: Unsupported if absent
    (checked by name, so a typo in our code still fails loudly instead of reading as None)."""
    fn = getattr(module, attr, None)
    if fn is None:
        raise Unsupported(attr)
    return fn


def _call_optional(module: Any, attr: str, *args: Any) -> Any:
    return _optional(module, attr)(*args)


class NvidiaBackend(VendorBackend):
    kind = "nvidia"
    name = "nvidia"
    library = "NVML"
    simulated = False

    def __init__(self, module: Any = None, *, clock: Callable[[], float] = time.time) -> None:
        self._nv = module if module is not None else _import_pynvml()
        super().__init__(clock)
        self._devices: list[_Device] = []
        self._num_fans: dict[int, int] = {}
        self.reader = FieldReader(self._is_unsupported, "nvidia")
        self._open_library()

    # -- lifecycle ---------------------------------------------------------------------------

    def _open_library(self) -> None:
        nv = self._nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise BackendUnavailable(
                _INIT_ERRORS.get(type(exc).__name__, f"nvmlInit failed: {exc}")
            ) from exc
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            self._shutdown_quietly()
            raise BackendUnavailable(f"nvmlDeviceGetCount failed: {exc}") from exc
        devices = []
        for i in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
            except nv.NVMLError as exc:
                # one broken or forbidden GPU must not hide the others
                log.warning("gpu: nvidia GPU %d skipped: %s", i, exc)
                continue
            name = self.reader.read(i, [("name", partial(nv.nvmlDeviceGetName, handle))])
            uuid = self.reader.read(i, [("uuid", partial(nv.nvmlDeviceGetUUID, handle))])
            devices.append(
                _Device(
                    i,
                    handle,
                    _text(name) if name is not None else "NVIDIA GPU",
                    _text(uuid) if uuid is not None else f"nvidia-index-{i}",
                )
            )
        self._devices = devices
        self.device_names = tuple(d.name for d in devices)
        self._open = True

    def _shutdown_library(self) -> None:
        self._nv.nvmlShutdown()

    def _is_unsupported(self, exc: BaseException) -> bool:
        mismatch = getattr(self._nv, "NVMLLibraryMismatchError", None)
        if mismatch is not None and isinstance(exc, mismatch):
            return True  # an unversioned call whose newest version the driver lacks
        return (
            isinstance(exc, self._nv.NVMLError) and getattr(exc, "value", None) in _PERMANENT_CODES
        )

    # -- sampling ----------------------------------------------------------------------------

    def sample(self) -> list[GpuSample]:
        with self._lock:
            if not self._open:
                self._open_library()
            t = self._clock()
            return [self._sample_device(d, t) for d in self._devices]

    def _sample_device(self, d: _Device, t: float) -> GpuSample:
        nv, read, i, h = self._nv, self.reader.read, d.index, d.handle
        util = read(i, [("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(h))])
        mem = read(
            i,
            [
                # v2 "used" excludes memory reserved by the driver, as nvidia-smi shows it
                ("memory_v2", lambda: self._memory_v2(h)),
                ("memory", lambda: nv.nvmlDeviceGetMemoryInfo(h)),
            ],
        )
        temp = read(
            i,
            [
                (
                    "temperature_v",
                    lambda: _optional(nv, "nvmlDeviceGetTemperatureV")(h, nv.NVML_TEMPERATURE_GPU),
                ),
                ("temperature", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ],
        )
        power_mw = read(i, [("power", lambda: nv.nvmlDeviceGetPowerUsage(h))])
        limit_mw = read(i, [("power_limit", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))])
        sm = read(i, [("sm_clock", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))])
        memclk = read(i, [("mem_clock", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))])
        fan = read(
            i,
            [("fan_v2", lambda: self._fan_v2(i, h)), ("fan", lambda: nv.nvmlDeviceGetFanSpeed(h))],
        )
        # mJ since the driver loaded; Volta and newer (NotSupported before: asked once)
        energy_mj = read(
            i,
            [("energy", partial(_call_optional, nv, "nvmlDeviceGetTotalEnergyConsumption", h))],
        )
        return GpuSample(
            index=i,
            name=d.name,
            uuid=d.uuid,
            t=t,
            util_pct=float(util.gpu) if util is not None else None,
            mem_util_pct=float(util.memory) if util is not None else None,
            mem_used_bytes=int(mem.used) if mem is not None else None,
            mem_total_bytes=int(mem.total) if mem is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000.0 if limit_mw is not None else None,
            sm_clock_mhz=float(sm) if sm is not None else None,
            mem_clock_mhz=float(memclk) if memclk is not None else None,
            fan_pct=float(fan) if fan is not None else None,
            energy_j=nvml_energy_j(energy_mj),
            processes=self._processes(i, h),
        )

    def _memory_v2(self, h: Any) -> Any:
        nv = self._nv
        version = getattr(nv, "nvmlMemory_v2", None)
        if version is None:  # a binding without the versioned struct (and without the kwarg)
            raise Unsupported("nvmlMemory_v2")
        return nv.nvmlDeviceGetMemoryInfo(h, version=version)

    def _fan_v2(self, i: int, h: Any) -> int:
        nv = self._nv
        n = self._num_fans.get(i)
        if n is None:
            n = int(_optional(nv, "nvmlDeviceGetNumFans")(h))
            self._num_fans[i] = n
        if n == 0:
            raise Unsupported("no fans")  # passive cards; the fallback will say the same
        speed = _optional(nv, "nvmlDeviceGetFanSpeed_v2")
        # the fastest fan: a card whose one fan is pinned at 100 % should show it
        return max(int(speed(h, k)) for k in range(n))

    def _processes(self, i: int, h: Any) -> tuple[GpuProcess, ...]:
        nv, read = self._nv, self.reader.read
        lists = []
        for kind in ("Compute", "Graphics"):
            newest = f"nvmlDeviceGet{kind}RunningProcesses"
            lists.append(
                read(
                    i,
                    [
                        (f"{kind.lower()}_processes", partial(_call_optional, nv, newest, h)),
                        # the unversioned call is v3 and raises a mismatch on older drivers
                        (
                            f"{kind.lower()}_processes_v2",
                            partial(_call_optional, nv, newest + "_v2", h),
                        ),
                    ],
                )
                or []
            )
        merged: dict[int, int | None] = {}
        for proc in lists[0] + lists[1]:
            pid = int(proc.pid)
            used = proc.usedGpuMemory
            used = None if used is None or int(used) >= _NOT_AVAILABLE_U64 else int(used)
            if pid in merged:
                # a process with both contexts appears in both lists with the same total:
                # take it once, never the sum
                old = merged[pid]
                merged[pid] = used if old is None else (old if used is None else max(old, used))
            else:
                merged[pid] = used
        return tuple(GpuProcess(pid, used) for pid, used in merged.items())
