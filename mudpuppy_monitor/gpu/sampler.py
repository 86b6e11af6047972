"""Sampling in one worker thread: the latest sample, an in-memory history ring per device,
listeners, and what sampling costs.

Vendor calls block (NVML can take ~20 ms per device with persistence mode off, and a sick driver
can hang), so they never run on the event loop. Listeners are called from the worker thread:
an asyncio consumer hands the list over with `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mudpuppy_monitor.gpu.base import GpuBackend, SampleListener
from mudpuppy_monitor.gpu.records import GpuSample

log = logging.getLogger("mudpuppy_monitor.gpu")


@dataclass(frozen=True, slots=True)
class SamplerStats:
    samples: int  # backend.sample() calls completed (ok or failed)
    errors: int  # calls that raised
    listener_errors: int
    last_cost_s: float | None  # wall time of the last backend.sample()
    mean_cost_s: float | None
    max_cost_s: float | None
    total_cost_s: float
    last_error: str | None


class GpuSampler:
    def __init__(
        self,
        backend: GpuBackend,
        interval_s: float = 1.0,
        history_s: float = 3600.0,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval_s must be a positive number, got {interval_s!r}")
        if not (history_s >= 0 and math.isfinite(history_s)):
            raise ValueError(f"history_s must be >= 0, got {history_s!r}")
        self.backend = backend
        self.interval_s = float(interval_s)
        self.history_s = float(history_s)
        # at least history_s worth of samples at this interval (+1 so the ring spans it)
        self.history_len = max(1, math.ceil(history_s / interval_s) + 1)
        self._timer = timer
        self._lock = threading.Lock()
        self._latest: list[GpuSample] = []
        self._history: dict[int, deque[GpuSample]] = {}
        self._listeners: list[SampleListener] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._samples = 0
        self._errors = 0
        self._listener_errors = 0
        self._last_cost: float | None = None
        self._max_cost: float | None = None
        self._total_cost = 0.0
        self._last_error: str | None = None
        self._logged_errors: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (no-op when it runs). A sampler can be started again after
        stop(); the backend re-opens its library on the first sample."""
        if self.running:
            return
        if self.backend.kind == "none":
            return  # nothing to sample: no thread at all
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="mudpuppy-gpu-sampler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the thread, then release the vendor library (in that order: NVML shutdown
        during a call can crash). Returns False when the thread did not finish in time; the
        library is then left open rather than pulled from under a running call."""
        thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("gpu: sampler thread still in a vendor call after %.1f s", timeout_s)
                return False
        self._thread = None
        self.backend.close()
        return True

    # -- reading -----------------------------------------------------------------------------

    def latest(self) -> list[GpuSample]:
        with self._lock:
            return list(self._latest)

    def history(self, index: int, since_t: float | None = None) -> list[GpuSample]:
        """Samples of device `index`, oldest first; only those with t > since_t if given."""
        with self._lock:
            ring = self._history.get(index)
            if ring is None:
                return []
            if since_t is None:
                return list(ring)
            return [s for s in ring if s.t > since_t]

    def indices(self) -> list[int]:
        with self._lock:
            return sorted(self._history)

    def add_listener(self, callback: SampleListener) -> Callable[[], None]:
        """Call `callback(samples)` from the worker thread after each sample. Returns a
        function that removes it. A listener that raises is counted, not fatal."""
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            self.remove_listener(callback)

        return remove

    def remove_listener(self, callback: SampleListener) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def stats(self) -> SamplerStats:
        with self._lock:
            n = self._samples
            return SamplerStats(
                samples=n,
                errors=self._errors,
                listener_errors=self._listener_errors,
                last_cost_s=self._last_cost,
                mean_cost_s=self._total_cost / n if n else None,
                max_cost_s=self._max_cost,
                total_cost_s=self._total_cost,
                last_error=self._last_error,
            )

    # -- the worker --------------------------------------------------------------------------

    def sample_once(self) -> list[GpuSample]:
        """Take one sample now, in the calling thread, and record it like the worker does.
        For tests and one-shot callers; never call it while the worker runs."""
        return self._tick()

    def _run(self, stop: threading.Event) -> None:
        # Fixed-rate schedule: the next tick is due interval_s after the previous one was due,
        # so the cost of sampling does not stretch the interval; after a long stall (a hung
        # driver, a suspended laptop) it skips ahead instead of bursting to catch up.
        due = self._timer()
        while not stop.is_set():
            self._tick()
            due += self.interval_s
            now = self._timer()
            if due < now:
                due = now
            stop.wait(due - now)

    def _tick(self) -> list[GpuSample]:
        start = self._timer()
        error: str | None = None
        try:
            samples = self.backend.sample()
        except Exception as exc:  # the sampler survives anything the backend does
            samples = []
            error = f"{type(exc).__name__}: {exc}"
        cost = self._timer() - start
        with self._lock:
            self._samples += 1
            self._last_cost = cost
            self._total_cost += cost
            self._max_cost = cost if self._max_cost is None else max(self._max_cost, cost)
            if error is not None:
                self._errors += 1
                self._last_error = error
            else:
                self._latest = samples
                for s in samples:
                    ring = self._history.get(s.index)
                    if ring is None:
                        ring = self._history[s.index] = deque(maxlen=self.history_len)
                    ring.append(s)
            listeners = list(self._listeners)
        if error is not None:
            if error not in self._logged_errors:
                self._logged_errors.add(error)
                log.warning(
                    "gpu: sampling failed (%s); retrying every %.1f s", error, self.interval_s
                )
            return samples
        for listener in listeners:
            try:
                listener(samples)
            except Exception:
                with self._lock:
                    self._listener_errors += 1
                key = f"listener:{id(listener)}"
                if key not in self._logged_errors:
                    self._logged_errors.add(key)
                    log.exception(
                        "gpu: sample listener %r failed (further failures counted)", listener
                    )
        return samples
