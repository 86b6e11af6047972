from __future__ import annotations

import threading
import time

import pytest

from mudpuppy_monitor.gpu import GpuSampler
from mudpuppy_monitor.gpu.fake import FakeBackend
from mudpuppy_monitor.gpu.none import NoneBackend
from mudpuppy_monitor.gpu.nvidia import NvidiaBackend
from mudpuppy_monitor.gpu.records import GpuSample
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mudpuppy-gpu-sampler"]


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class RecordingBackend:
    """Records the order of sample() and close() calls; can block inside sample()."""

    kind = "nvidia"
    name = "recording"
    simulated = False
    reason = ""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()
        self.fail: Exception | None = None

    def device_count(self) -> int:
        return 1

    def sample(self) -> list[GpuSample]:
        self.events.append("sample-start")
        self.inside.set()
        self.gate.wait()
        self.events.append("sample-end")
        if self.fail is not None:
            raise self.fail
        return [GpuSample(index=0, name="r", uuid="GPU-r", t=float(len(self.events)))]

    def close(self) -> None:
        self.events.append("close")


def test_start_stop_100_times_leaks_no_thread() -> None:
    before = set(threading.enumerate())
    backend = FakeBackend(devices=2, seed=0)
    sampler = GpuSampler(backend, interval_s=0.001, history_s=1)
    for _ in range(100):
        sampler.start()
        assert sampler.running
        assert len(sampler_threads()) == 1
        assert sampler.stop() is True
        assert not sampler.running
    assert sampler_threads() == []
    assert set(threading.enumerate()) == before


def test_start_twice_is_one_thread() -> None:
    sampler = GpuSampler(FakeBackend(devices=1), interval_s=0.01)
    sampler.start()
    sampler.start()
    try:
        assert len(sampler_threads()) == 1
    finally:
        sampler.stop()


def test_none_backend_starts_no_thread() -> None:
    sampler = GpuSampler(NoneBackend("off"), interval_s=0.01)
    sampler.start()
    assert sampler_threads() == []
    assert sampler.latest() == []
    assert sampler.stop() is True


def test_history_ring_keeps_at_least_history_s_and_drops_the_oldest() -> None:
    clock = Clock()
    sampler = GpuSampler(FakeBackend(devices=2, clock=clock), interval_s=1.0, history_s=3600)
    assert sampler.history_len == 3601
    for i in range(3700):
        clock.t = 1_000.0 + i
        sampler.sample_once()
    for index in (0, 1):
        ring = sampler.history(index)
        assert len(ring) == 3601
        assert ring[0].t == 1_000.0 + 99
        assert ring[-1].t == 1_000.0 + 3699
        assert ring[-1].t - ring[0].t == 3600.0  # one hour spanned
    assert [s.t for s in sampler.history(1, since_t=4697.0)] == [4698.0, 4699.0]
    assert sampler.history(7) == []
    assert sampler.indices() == [0, 1]
    assert [s.index for s in sampler.latest()] == [0, 1]


def test_listeners_run_on_the_worker_thread_and_can_be_removed() -> None:
    sampler = GpuSampler(FakeBackend(devices=2), interval_s=0.005)
    got: list[tuple[str, int]] = []
    remove = sampler.add_listener(
        lambda samples: got.append((threading.current_thread().name, len(samples)))
    )
    sampler.start()
    try:
        wait_for(lambda: len(got) >= 3)
        remove()
        n = len(got)
        time.sleep(0.05)
        assert len(got) in (n, n + 1)  # at most the tick in flight
    finally:
        sampler.stop()
    assert got[0] == ("mudpuppy-gpu-sampler", 2)


def test_a_failing_listener_is_counted_and_sampling_goes_on(caplog) -> None:
    sampler = GpuSampler(FakeBackend(devices=1), interval_s=0.005)

    def bad(samples: list[GpuSample]) -> None:
        raise ValueError("listener bug")

    good: list[int] = []
    sampler.add_listener(bad)
    sampler.add_listener(lambda s: good.append(1))
    sampler.start()
    try:
        wait_for(lambda: len(good) >= 3)
    finally:
        sampler.stop()
    stats = sampler.stats()
    assert stats.listener_errors >= 3
    assert stats.errors == 0
    assert sum("listener" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_a_failing_backend_is_counted_and_the_last_good_sample_kept() -> None:
    backend = RecordingBackend()
    sampler = GpuSampler(backend, interval_s=1.0)
    (good,) = sampler.sample_once()
    backend.fail = RuntimeError("driver hiccup")
    assert sampler.sample_once() == []
    assert sampler.latest() == [good]
    stats = sampler.stats()
    assert (stats.samples, stats.errors, stats.last_error) == (2, 1, "RuntimeError: driver hiccup")


def test_stop_joins_the_thread_before_closing_the_backend() -> None:
    backend = RecordingBackend()
    sampler = GpuSampler(backend, interval_s=0.001)
    sampler.start()
    wait_for(lambda: backend.events.count("sample-end") >= 2)
    assert sampler.stop() is True
    assert backend.events[-1] == "close"
    assert backend.events[-2] == "sample-end"  # no sample started after or during close
    assert backend.events.count("close") == 1


def test_stop_with_a_hung_call_leaves_the_library_open() -> None:
    backend = RecordingBackend()
    backend.gate.clear()
    sampler = GpuSampler(backend, interval_s=0.001)
    sampler.start()
    assert backend.inside.wait(5)
    assert sampler.stop(timeout_s=0.05) is False
    assert "close" not in backend.events  # never shut the library down under a call
    backend.gate.set()
    assert sampler.stop() is True
    assert backend.events[-1] == "close"
    assert sampler_threads() == []


def test_cost_counter_with_a_fake_timer() -> None:
    ticks = iter([0.0, 0.004, 10.0, 10.010])
    sampler = GpuSampler(FakeBackend(devices=1), interval_s=1.0, timer=lambda: next(ticks))
    sampler.sample_once()
    sampler.sample_once()
    stats = sampler.stats()
    assert stats.samples == 2
    assert stats.last_cost_s == pytest.approx(0.010)
    assert stats.max_cost_s == pytest.approx(0.010)
    assert stats.mean_cost_s == pytest.approx(0.007)
    assert stats.total_cost_s == pytest.approx(0.014)


def test_interval_is_kept_while_running() -> None:
    backend = FakeBackend(devices=1)
    sampler = GpuSampler(backend, interval_s=0.02)
    sampler.start()
    time.sleep(0.25)
    sampler.stop()
    # 0.25 s at 50 Hz: about 13 ticks; generous bounds for a loaded 2-core machine
    assert 3 <= backend.samples_taken <= 16


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_bad_interval_rejected(interval: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        GpuSampler(FakeBackend(devices=1), interval_s=interval)


def test_bad_history_rejected() -> None:
    with pytest.raises(ValueError, match="history_s"):
        GpuSampler(FakeBackend(devices=1), history_s=-5)


def test_nvidia_backend_in_the_thread_then_one_shutdown() -> None:
    nv = make_fake_pynvml([FakeNvDevice(), FakeNvDevice(uuid="GPU-2", fans=None)])
    sampler = GpuSampler(NvidiaBackend(module=nv), interval_s=0.005)
    for _ in range(3):
        before = sampler.stats().samples
        sampler.start()
        wait_for(lambda before=before: sampler.stats().samples > before)
        assert sampler.stop() is True
    assert nv.calls["nvmlInit"] == 3  # re-opened after each stop
    assert nv.calls["nvmlShutdown"] == 3
    assert nv.calls["nvmlDeviceGetFanSpeed"] == 1  # unsupported stays remembered across restarts
    assert [s.fan_pct for s in sampler.latest()] == [52.0, None]
