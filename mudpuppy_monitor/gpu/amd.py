"""AMD GPUs through AMD SMI (`import amdsmi`, the ROCm bindings).

The Python API changed shape between ROCm 6.x and 7.x and reports missing values as the string
"N/A", so every value is read defensively: "N/A" -> None, MiB -> bytes, either power key, either
process-list shape. Unverified on hardware here (see docs/gpu.md).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import partial
from typing import Any

from mudpuppy_monitor.gpu.base import BackendUnavailable, FieldReader, Unsupported, VendorBackend
from mudpuppy_monitor.gpu.energy import amd_energy_j
from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample

log = logging.getLogger("mudpuppy_monitor.gpu")

MIB = 1024 * 1024

# amdsmi_status_t codes that mean "never on this device": INVAL 1, NOT_SUPPORTED 2,
# NOT_YET_IMPLEMENTED 3, NO_PERM 10. Others (busy, timeout, I/O) are retried.
_PERMANENT_CODES = frozenset({1, 2, 3, 10})

_UNIT_BYTES = {
    "B": 1,
    "KB": 1024,
    "KIB": 1024,
    "MB": MIB,
    "MIB": MIB,
    "GB": 1024**3,
    "GIB": 1024**3,
}


@dataclass
class _Device:
    index: int
    handle: Any
    name: str
    uuid: str


def _import_amdsmi() -> Any:
    # Without libamd_smi.so the import prints a message and raises KeyError (measured):
    # catch everything, and keep its chatter off the user's terminal.
    chatter = io.StringIO()
    try:
        with redirect_stdout(chatter), redirect_stderr(chatter):
            import amdsmi
    except ModuleNotFoundError as exc:
        if exc.name == "amdsmi":
            raise BackendUnavailable("amdsmi not installed") from exc
        raise BackendUnavailable(f"amdsmi import failed: {exc}") from exc
    except Exception as exc:
        raise BackendUnavailable(
            f"amdsmi installed but its library did not load ({type(exc).__name__}: {exc}; no ROCm?)"
        ) from exc
    return amdsmi


def value(raw: Any) -> float | None:
    """A number from AMD SMI: "N/A" (and any other non-number) -> None; {"value", "unit"}
    dicts (seen in some 7.x fields) -> the value."""
    if isinstance(raw, dict):
        raw = raw.get("value")
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, (int, float)):
        number = float(raw)
    else:
        try:
            number = float(str(raw).strip())
        except ValueError:
            return None  # "N/A"
    return number if math.isfinite(number) else None  # "nan"/"inf" parse, but mean nothing


def byte_count(raw: Any, default_unit: str = "B") -> int | None:
    unit = default_unit
    if isinstance(raw, dict):
        unit = str(raw.get("unit") or default_unit)
    number = value(raw)
    if number is None:
        return None
    scale = _UNIT_BYTES.get(unit.upper())
    return int(number * scale) if scale is not None else None


def _first(info: Any, *keys: str) -> float | None:
    if not isinstance(info, dict):
        return None
    for key in keys:
        number = value(info.get(key))
        if number is not None:
            return number
    return None


class AmdBackend(VendorBackend):
    kind = "amd"
    name = "amd"
    library = "AMD SMI"
    simulated = False

    def __init__(self, module: Any = None, *, clock: Callable[[], float] = time.time) -> None:
        self._am = module if module is not None else _import_amdsmi()
        super().__init__(clock)
        self._devices: list[_Device] = []
        self._fan_max: dict[int, float] = {}
        self.reader = FieldReader(self._is_unsupported, "amd")
        self._open_library()

    # -- lifecycle ---------------------------------------------------------------------------

    def _open_library(self) -> None:
        am = self._am
        flags = getattr(getattr(am, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
        try:
            am.amdsmi_init() if flags is None else am.amdsmi_init(flags)
        except Exception as exc:
            raise BackendUnavailable(f"amdsmi_init failed: {exc}") from exc
        try:
            handles = list(am.amdsmi_get_processor_handles())
        except Exception as exc:
            self._shutdown_quietly()
            raise BackendUnavailable(f"amdsmi_get_processor_handles failed: {exc}") from exc
        devices = []
        for i, h in enumerate(handles):
            asic = self.reader.read(i, [("asic_info", partial(am.amdsmi_get_gpu_asic_info, h))])
            name = asic.get("market_name") if isinstance(asic, dict) else None
            uuid = self.reader.read(i, [("uuid", partial(am.amdsmi_get_gpu_device_uuid, h))])
            devices.append(
                _Device(
                    i,
                    h,
                    str(name) if name not in (None, "", "N/A") else "AMD GPU",
                    str(uuid) if uuid not in (None, "", "N/A") else f"amd-index-{i}",
                )
            )
        self._devices = devices
        self.device_names = tuple(d.name for d in devices)
        self._open = True

    def _shutdown_library(self) -> None:
        self._am.amdsmi_shut_down()

    def _is_unsupported(self, exc: BaseException) -> bool:
        lib_exc = getattr(self._am, "AmdSmiLibraryException", None)
        if lib_exc is None or not isinstance(exc, lib_exc):
            return False
        getter = getattr(exc, "get_error_code", None)
        code = getter() if callable(getter) else getattr(exc, "err_code", None)
        return isinstance(code, int) and abs(code) in _PERMANENT_CODES

    # -- sampling ----------------------------------------------------------------------------

    def sample(self) -> list[GpuSample]:
        with self._lock:
            if not self._open:
                self._open_library()
            t = self._clock()
            return [self._sample_device(d, t) for d in self._devices]

    def _sample_device(self, d: _Device, t: float) -> GpuSample:
        am, read, i, h = self._am, self.reader.read, d.index, d.handle
        activity = read(i, [("activity", lambda: am.amdsmi_get_gpu_activity(h))])
        vram = read(i, [("vram", lambda: am.amdsmi_get_gpu_vram_usage(h))])
        temp = read(
            i,
            [
                ("temperature_edge", lambda: self._temperature(h, "EDGE")),
                # MI200/MI300 have no edge sensor: the hotspot (junction) one is what they report
                ("temperature_hotspot", lambda: self._temperature(h, "HOTSPOT")),
            ],
        )
        power = read(i, [("power", lambda: am.amdsmi_get_power_info(h))])
        # MI300+ fill current_socket_power and leave average "N/A"; older parts the reverse
        power_w = _first(power, "current_socket_power", "socket_power", "average_socket_power")
        limit_w = _first(power, "power_limit")
        if limit_w is None:
            cap = read(i, [("power_cap", lambda: am.amdsmi_get_power_cap_info(h))])
            cap_uw = _first(cap, "power_cap")  # microwatts
            limit_w = cap_uw / 1e6 if cap_uw is not None else None
        gfx = read(i, [("gfx_clock", lambda: self._clock_mhz(h, "GFX"))])
        mem = read(i, [("mem_clock", lambda: self._clock_mhz(h, "MEM"))])
        fan = read(i, [("fan", lambda: self._fan_pct(i, h))])
        energy = read(i, [("energy", lambda: self._energy_j(h))])
        return GpuSample(
            index=i,
            name=d.name,
            uuid=d.uuid,
            t=t,
            util_pct=_first(activity, "gfx_activity"),
            mem_util_pct=_first(activity, "umc_activity"),
            mem_used_bytes=byte_count(vram.get("vram_used"), "MiB")
            if isinstance(vram, dict)
            else None,
            mem_total_bytes=byte_count(vram.get("vram_total"), "MiB")
            if isinstance(vram, dict)
            else None,
            temperature_c=temp,
            power_w=power_w,
            power_limit_w=limit_w,
            sm_clock_mhz=gfx,
            mem_clock_mhz=mem,
            fan_pct=fan,
            energy_j=energy,
            processes=self._processes(i, h),
        )

    def _temperature(self, h: Any, sensor: str) -> float:
        am = self._am
        kind = getattr(am.AmdSmiTemperatureType, sensor, None)
        if kind is None and sensor == "HOTSPOT":
            kind = getattr(am.AmdSmiTemperatureType, "JUNCTION", None)  # older enum name
        if kind is None:
            raise Unsupported(sensor)
        celsius = value(am.amdsmi_get_temp_metric(h, kind, am.AmdSmiTemperatureMetric.CURRENT))
        if celsius is None:
            raise Unsupported(f"{sensor} temperature N/A")
        return celsius

    def _clock_mhz(self, h: Any, clock: str) -> float | None:
        info = self._am.amdsmi_get_clock_info(h, getattr(self._am.AmdSmiClkType, clock))
        return _first(info, "clk", "cur_clk")  # 7.x says "clk", 6.x "cur_clk"

    def _fan_pct(self, i: int, h: Any) -> float | None:
        am = self._am
        top = self._fan_max.get(i)
        if top is None:
            top = value(am.amdsmi_get_gpu_fan_speed_max(h, 0))
            if not top:  # "N/A" or 0: a passive card
                raise Unsupported("fan")
            self._fan_max[i] = top
        speed = value(am.amdsmi_get_gpu_fan_speed(h, 0))  # 0..max (usually 255), not %
        return None if speed is None else round(speed * 100.0 / top, 1)

    def _energy_j(self, h: Any) -> float | None:
        """The energy counter in joules, read with either binding's key (`energy_accumulator`,
        or `power` before amdsmi 6.2.1). A function missing from an old binding, or a result
        without a counter ("N/A", no resolution), is unsupported: asked once. A counter at
        exactly 0 is no reading: the second GCD of an MI250/MI250X reports 0 (its package's
        energy is on the first), and a live device's counter is never 0."""
        fn = getattr(self._am, "amdsmi_get_energy_count", None)
        if fn is None:
            raise Unsupported("amdsmi_get_energy_count")
        joules = amd_energy_j(fn(h))
        if joules is None:
            raise Unsupported("energy count N/A")
        return joules if joules > 0 else None

    def _processes(self, i: int, h: Any) -> tuple[GpuProcess, ...]:
        am = self._am
        listed = self.reader.read(i, [("processes", lambda: am.amdsmi_get_gpu_process_list(h))])
        out: dict[int, int | None] = {}
        for item in listed or []:
            if isinstance(item, dict):
                info = item  # >= 6.2: the list holds the details
            else:
                # 6.0/6.1: the list holds process handles; details need one more call each
                try:
                    info = am.amdsmi_get_gpu_process_info(h, item)
                except Exception:
                    continue  # the process exited between the two calls
            if not isinstance(info, dict):
                continue
            pid = value(info.get("pid"))
            if pid is None:
                continue
            usage = info.get("memory_usage")
            used = byte_count(usage.get("vram_mem")) if isinstance(usage, dict) else None
            if used is None:
                used = byte_count(info.get("mem"))
            out[int(pid)] = used
        return tuple(GpuProcess(pid, used) for pid, used in out.items())
