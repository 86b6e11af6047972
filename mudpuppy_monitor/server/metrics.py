"""`/metrics`: the runs and GPUs in Prometheus text format.

A custom collector reads the current state when scraped (nothing is updated per event), in a
registry owned by the app: two apps in one process (tests, the demo) never share metrics, and the
process-wide default registry is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mudpuppy_monitor.core.protocols import RunQueries
from mudpuppy_monitor.core.summary import STATUSES, RunSummary
from mudpuppy_monitor.server.feed import GpuView, attribution_dict

if TYPE_CHECKING:  # the hub imports the WebSocket machinery; /metrics only reads its counters
    from mudpuppy_monitor.server.hub import Hub

# (metric suffix, RunSummary field, help)
RUN_GAUGES = (
    ("step", "step", "Last training step seen."),
    ("max_steps", "max_steps", "Planned number of steps."),
    ("epoch", "epoch", "Last epoch seen."),
    ("loss", "loss", "Last training loss."),
    ("best_loss", "best_loss", "Lowest training loss so far."),
    ("eval_loss", "eval_loss", "Last evaluation loss."),
    ("learning_rate", "learning_rate", "Last learning rate."),
    ("grad_norm", "grad_norm", "Last gradient norm."),
    ("steps_per_second", "steps_per_s", "Training steps per second (recent window)."),
    ("tokens_per_second", "tokens_per_s", "Tokens per second (recent window)."),
    ("eta_seconds", "eta_s", "Estimated seconds to the last step."),
    ("elapsed_seconds", "elapsed_s", "Seconds since the run started."),
    ("last_event_age_seconds", "last_event_age_s", "Seconds since the run's last event."),
)

# (metric suffix, GpuSample field, help)
GPU_GAUGES = (
    ("utilization_percent", "util_pct", "GPU utilization."),
    ("memory_utilization_percent", "mem_util_pct", "Memory controller utilization."),
    ("memory_used_bytes", "mem_used_bytes", "Device memory in use."),
    ("memory_total_bytes", "mem_total_bytes", "Device memory in total."),
    ("temperature_celsius", "temperature_c", "GPU temperature."),
    ("power_watts", "power_w", "Power draw."),
    ("power_limit_watts", "power_limit_w", "Enforced power limit."),
    ("sm_clock_mhz", "sm_clock_mhz", "SM clock."),
    ("memory_clock_mhz", "mem_clock_mhz", "Memory clock."),
    ("fan_percent", "fan_pct", "Fan speed."),
)


class MonitorCollector:
    def __init__(self, monitor: RunQueries, gpus: GpuView, hub: Hub | None = None) -> None:
        self.monitor = monitor
        self.gpus = gpus
        self.hub = hub

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration time: the monitor may not be started yet

    def collect(self) -> Iterator[Metric]:
        summaries = list(self.monitor.summaries())
        yield from run_metrics(summaries)
        yield from gpu_metrics(self.gpus, summaries)
        if self.hub is not None:
            yield from hub_metrics(self.hub)


def run_metrics(summaries: Sequence[RunSummary]) -> Iterator[Metric]:
    labels = ["run"]
    gauges = {
        suffix: GaugeMetricFamily(f"mudpuppy_run_{suffix}", doc, labels=labels)
        for suffix, _, doc in RUN_GAUGES
    }
    info = GaugeMetricFamily(
        "mudpuppy_run_info", "Run identity (always 1).", labels=["run", "name", "source", "host"]
    )
    status = GaugeMetricFamily(
        "mudpuppy_run_status", "1 for the run's current status.", labels=["run", "status"]
    )
    bad = CounterMetricFamily(
        "mudpuppy_run_bad_lines", "Lines skipped as unreadable.", labels=labels
    )
    nonfinite = CounterMetricFamily(
        "mudpuppy_run_nonfinite_values", "Non-finite training values seen.", labels=labels
    )
    for s in summaries:
        for suffix, attr, _ in RUN_GAUGES:
            value = _number(getattr(s, attr, None))
            if value is not None:
                gauges[suffix].add_metric([s.id], value)
        info.add_metric([s.id, s.name or "", s.source or "", s.host or ""], 1.0)
        for st in STATUSES:
            status.add_metric([s.id, st], 1.0 if s.status == st else 0.0)
        bad.add_metric([s.id], float(s.bad_lines or 0))
        nonfinite.add_metric([s.id], float(s.nonfinite or 0))
    runs = GaugeMetricFamily("mudpuppy_runs", "Runs under the served root.")
    runs.add_metric([], float(len(summaries)))
    yield runs
    yield info
    yield status
    yield from gauges.values()
    yield bad
    yield nonfinite


def gpu_metrics(gpus: GpuView, summaries: Sequence[RunSummary]) -> Iterator[Metric]:
    sampler = gpus.sampler
    if sampler is None:
        return
    samples = list(sampler.latest())
    if not samples:
        return
    attribution = attribution_dict(samples, summaries)
    labels = ["gpu", "uuid", "name", "run"]
    gauges = {
        suffix: GaugeMetricFamily(f"mudpuppy_gpu_{suffix}", doc, labels=labels)
        for suffix, _, doc in GPU_GAUGES
    }
    per_run = GaugeMetricFamily(
        "mudpuppy_gpu_run", "1 for each run attributed to a GPU.", labels=["gpu", "uuid", "run"]
    )
    simulated = GaugeMetricFamily(
        "mudpuppy_gpu_simulated", "1 when GPU samples are simulated (fake backend).", labels=[]
    )
    simulated.add_metric([], 1.0 if getattr(gpus.backend, "simulated", False) else 0.0)
    for s in samples:
        runs = sorted((attribution.get(str(s.index)) or {}).get("runs") or [])
        # one label value per device, so a dashboard can group by run without a join;
        # several runs on one device are joined by ","; the per-run series is mudpuppy_gpu_run
        label = [str(s.index), s.uuid or "", s.name or "", ",".join(runs)]
        for suffix, attr, _ in GPU_GAUGES:
            value = _number(getattr(s, attr, None))
            if value is not None:
                gauges[suffix].add_metric(label, value)
        for run in runs:
            per_run.add_metric([str(s.index), s.uuid or "", run], 1.0)
    yield simulated
    yield from gauges.values()
    yield per_run


def hub_metrics(hub: Hub) -> Iterator[Metric]:
    clients = GaugeMetricFamily("mudpuppy_ws_clients", "WebSocket clients connected.")
    clients.add_metric([], float(len(hub.clients)))
    yield clients
    for name, attr, doc in (
        ("mudpuppy_ws_messages", "messages", "Distinct messages published (serialized once)."),
        ("mudpuppy_ws_deliveries", "deliveries", "Messages queued to clients."),
        ("mudpuppy_ws_resyncs", "resyncs", "Clients resynced for being too slow."),
        ("mudpuppy_ws_slow_disconnects", "disconnects", "Clients disconnected for being too slow."),
        ("mudpuppy_ws_connections", "connections", "WebSocket clients accepted since start."),
    ):
        c = CounterMetricFamily(name, doc)
        c.add_metric([], float(getattr(hub.stats, attr)))
        yield c


def _number(value: Any) -> float | None:
    """The value as a float, None when it is not a number (unknown: no sample at all)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def build_registry(monitor: RunQueries, gpus: GpuView, hub: Hub | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(monitor, gpus, hub))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
