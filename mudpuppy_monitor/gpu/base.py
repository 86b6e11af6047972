"""The backend interface, and what the vendor backends share: the per-field reader that
remembers unsupported fields, the lock-guarded close, the exceptions a backend raises.

A leaf of the GPU package: the vendors import it, it imports none of them (the factory that
picks a backend is `gpu/backends.py`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from mudpuppy_monitor.gpu.records import GpuSample

log = logging.getLogger("mudpuppy_monitor.gpu")

T = TypeVar("T")


@runtime_checkable
class GpuBackend(Protocol):
    kind: str  # "nvidia" | "amd" | "fake" | "none": stable, for code
    name: str  # for people; the fake backend's name says it is simulated
    simulated: bool
    reason: str  # why this backend was chosen, or why there is none

    def device_count(self) -> int: ...

    def sample(self) -> list[GpuSample]:
        """One sample of every device. Blocking (vendor calls): never on the event loop."""
        ...

    def close(self) -> None:
        """Release the vendor library. Idempotent; a later sample() opens it again."""
        ...


def backend_json(backend: GpuBackend | None) -> dict[str, Any]:
    """Which backend is sampling, as the protocol and `gpus --json` say it (None: no sampling)."""
    if backend is None:
        return {"backend": "none", "name": "none", "simulated": False, "reason": ""}
    return {
        "backend": backend.kind,
        "name": backend.name,
        "simulated": bool(backend.simulated),
        "reason": backend.reason or "",
    }


class SampleSource(Protocol):
    """Where a front end reads the latest sample of every device (a GpuSampler, or a one-shot
    reader for `tui --once`)."""

    def latest(self) -> list[GpuSample]: ...


SampleListener = Callable[[list[GpuSample]], None]


class SampleFeed(SampleSource, Protocol):
    """A sampler as the server uses it: the latest sample, a history per device, and a listener
    called from the sampling thread after each sample."""

    def history(self, index: int, since_t: float | None = None) -> list[GpuSample]: ...

    def add_listener(self, callback: SampleListener) -> Callable[[], None]:
        """Returns the function that removes the listener."""
        ...


class BackendUnavailable(Exception):
    """Raised by a backend constructor when its library or driver is not usable here."""


class Unsupported(Exception):
    """Raised by a field read to say "this device does not have it" (e.g. AMD "N/A")."""


class FieldReader:
    """Reads fields through vendor calls and remembers, per (device, field), the ones a
    device does not support, so they are never asked again (some calls cost ~20 ms per
    device, and a permanent NotSupported is not news).

    Transient errors (GPU lost, timeout, unknown) give None for this sample only; they are
    counted and logged once per (device, field, error type), and retried next time.
    """

    def __init__(self, is_unsupported: Callable[[BaseException], bool], vendor: str) -> None:
        self._is_unsupported = is_unsupported
        self._vendor = vendor
        self.unsupported: set[tuple[int, str]] = set()
        self.calls = 0
        self.errors = 0
        self.last_error: str | None = None
        self._logged: set[tuple[int, str, str]] = set()

    def read(self, index: int, attempts: Sequence[tuple[str, Callable[[], T]]]) -> T | None:
        """Try each (key, call) in order, skipping keys known unsupported; an unsupported
        answer marks the key and falls through to the next attempt (the fallback). A
        transient error stops here: a fallback could measure something else (v1 vs v2
        memory "used"), and a value that flips between the two would be worse than a gap."""
        for key, call in attempts:
            if (index, key) in self.unsupported:
                continue
            self.calls += 1
            try:
                return call()
            except Exception as exc:
                if isinstance(exc, Unsupported) or self._is_unsupported(exc):
                    self.unsupported.add((index, key))
                    continue
                self._transient(index, key, exc)
                return None
        return None

    def _transient(self, index: int, key: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{self._vendor} GPU {index} {key}: {type(exc).__name__}: {exc}"
        tag = (index, key, type(exc).__name__)
        if tag not in self._logged:
            self._logged.add(tag)
            log.warning(
                "gpu: %s (further errors of this kind are counted, not logged)", self.last_error
            )

    def known_unsupported(self, index: int) -> list[str]:
        return sorted(key for i, key in self.unsupported if i == index)


class VendorBackend:
    """What the nvidia and amd backends share: one lock around every library call, and a
    close that never shuts the library down under a call still in flight (a shutdown during
    a call can crash the process; a call stuck in the driver leaves the library initialised)."""

    kind = "vendor"
    library = "the GPU library"  # for log lines

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._devices: list[Any] = []
        self.reason = ""
        self.device_names: tuple[str, ...] = ()

    def _shutdown_library(self) -> None:
        raise NotImplementedError

    def _shutdown_quietly(self) -> None:
        try:
            self._shutdown_library()
        except Exception as exc:
            log.warning("gpu: %s shutdown failed: %s", self.library, exc)

    def close(self) -> None:
        if not self._lock.acquire(timeout=5.0):
            log.warning("gpu: a %s call is still running; library left initialised", self.library)
            return
        try:
            if self._open:
                self._open = False
                self._shutdown_quietly()
        finally:
            self._lock.release()

    def device_count(self) -> int:
        return len(self._devices)
