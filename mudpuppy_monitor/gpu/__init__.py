"""GPU telemetry: NVIDIA (NVML) and AMD (AMD SMI) behind one interface, attributed to runs."""

from mudpuppy_monitor.gpu.attribution import attribute
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS, open_backend
from mudpuppy_monitor.gpu.base import GpuBackend, SampleFeed, SampleSource
from mudpuppy_monitor.gpu.records import Attribution, GpuProcess, GpuSample, RunOnDevice
from mudpuppy_monitor.gpu.sampler import GpuSampler, SamplerStats

__all__ = [
    "BACKEND_KINDS",
    "Attribution",
    "GpuBackend",
    "GpuProcess",
    "GpuSample",
    "GpuSampler",
    "RunOnDevice",
    "SampleFeed",
    "SampleSource",
    "SamplerStats",
    "attribute",
    "open_backend",
]
