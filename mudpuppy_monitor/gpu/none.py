"""The `none` backend: no GPU sampling, and the reason why."""

from __future__ import annotations

from mudpuppy_monitor.gpu.records import GpuSample


class NoneBackend:
    kind = "none"
    name = "none"
    simulated = False

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.device_names: tuple[str, ...] = ()

    def device_count(self) -> int:
        return 0

    def sample(self) -> list[GpuSample]:
        return []

    def close(self) -> None:
        pass
