"""`open_backend`: the GPU backend for a kind, or the one that works on this host ("auto").

A missing driver or library is a normal state here: `open_backend` never raises for it, it
returns the `none` backend and says why in `reason`. Vendor modules are imported only when tried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mudpuppy_monitor.gpu.base import BackendUnavailable, GpuBackend

log = logging.getLogger("mudpuppy_monitor.gpu")

# what a command line may ask for (`--gpu`, `--backend`): the backend kinds, and "auto"
BACKEND_KINDS: tuple[str, ...] = ("auto", "nvidia", "amd", "fake", "none")


def open_backend(
    kind: str = "auto",
    *,
    nvidia_module: Any = None,
    amd_module: Any = None,
    fake_devices: int = 2,
    fake_seed: int = 0,
    clock: Callable[[], float] = time.time,
    logger: logging.Logger | None = None,
) -> GpuBackend:
    """The backend for `kind`. For "auto": nvidia, then amd, then none, and ONE log line that
    says what was found and why the others were skipped. A named vendor that is not usable
    gives the none backend with the reason (never an exception). Modules are injectable for
    tests; None imports the real library."""
    from mudpuppy_monitor.gpu.none import NoneBackend

    logger = logger or log
    if kind not in BACKEND_KINDS:
        raise ValueError(
            f"unknown GPU backend {kind!r}; expected one of {', '.join(BACKEND_KINDS)}"
        )
    if kind == "none":
        backend: GpuBackend = NoneBackend("GPU sampling turned off")
        logger.info("gpu: none (turned off)")
        return backend
    if kind == "fake":
        from mudpuppy_monitor.gpu.fake import FakeBackend

        backend = FakeBackend(devices=fake_devices, seed=fake_seed, clock=clock)
        logger.info("gpu: %s, %d simulated devices (not real hardware)", backend.name, fake_devices)
        return backend

    order = ("nvidia", "amd") if kind == "auto" else (kind,)
    skipped: list[str] = []
    for i, vendor in enumerate(order):
        try:
            backend = _open_vendor(vendor, nvidia_module, amd_module, clock)
        except BackendUnavailable as exc:
            skipped.append(f"{vendor}: {exc}")
            continue
        except Exception as exc:  # a broken binding must not take the daemon down
            skipped.append(f"{vendor}: unexpected {type(exc).__name__}: {exc}")
            continue
        count = backend.device_count()
        if count == 0:
            backend.close()
            skipped.append(f"{vendor}: library loaded but no devices")
            continue
        notes = skipped + [f"{v}: not tried, {vendor} found first" for v in order[i + 1 :]]
        names = ", ".join(getattr(backend, "device_names", ()))
        found = f"{vendor}, {count} device(s)" + (f": {names}" if names else "")
        backend.reason = found + (f" ({'; '.join(notes)})" if notes else "")
        logger.info("gpu: %s", backend.reason)
        return backend

    reason = "; ".join(skipped)
    logger.info("gpu: none (%s)", reason)
    return NoneBackend(reason)


def _open_vendor(
    vendor: str, nvidia_module: Any, amd_module: Any, clock: Callable[[], float]
) -> GpuBackend:
    if vendor == "nvidia":
        from mudpuppy_monitor.gpu.nvidia import NvidiaBackend

        return NvidiaBackend(module=nvidia_module, clock=clock)
    from mudpuppy_monitor.gpu.amd import AmdBackend

    return AmdBackend(module=amd_module, clock=clock)
