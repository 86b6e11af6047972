"""RunSummary: the one-line picture of a run that every front end shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mudpuppy_monitor.jsonutil import safe_dict

STATUSES = ("running", "stalled", "completed", "failed", "interrupted", "crashed", "unknown")


@dataclass(frozen=True)
class RunSummary:
    id: str
    name: str
    source: str
    status: str
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    num_train_epochs: float | None = None
    loss: float | None = None
    best_loss: float | None = None
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    steps_per_s: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    started_t: float | None = None
    last_event_t: float | None = None
    last_event_age_s: float | None = None
    bad_lines: int = 0
    host: str | None = None
    pid: int | None = None
    ppid: int | None = None  # meta `ppid`: the writer's parent (torchrun's agent under torchrun)
    world_size: int | None = None  # meta `world_size`: 1 = a single process, no sibling workers
    gpus: list[str] = field(default_factory=list)
    error: str | None = None
    nonfinite: int = 0
    samples: int = 0  # `samples` events logged (a front end asks for none of a run with 0)
    generation: int = 0
    # efficiency, filled by the layer that combines runs and GPU samples (mudpuppy_monitor.
    # efficiency, through Monitor.annotator); null when unknown, and `efficiency_note` says why
    mfu: float | None = None  # model FLOPs utilisation, a fraction of the devices' summed peak
    joules_per_token: float | None = None  # over the recent window
    energy_kwh: float | None = None  # GPU energy of the run since the daemon saw it on a GPU
    efficiency_note: str | None = None  # why any of the three is null; None when all are known
    # while the run's backlog is read in the background: {"bytes": read, "total": size}
    loading: dict[str, int] | None = None

    def with_efficiency(
        self,
        mfu: float | None,
        joules_per_token: float | None,
        energy_kwh: float | None,
        efficiency_note: str | None,
    ) -> RunSummary:
        """A copy with the efficiency fields set: `dataclasses.replace` without running
        `__init__` field by field again (a summary is made for every run on every query)."""
        out = object.__new__(RunSummary)
        out.__dict__.update(self.__dict__)
        out.__dict__.update(
            mfu=mfu,
            joules_per_token=joules_per_token,
            energy_kwh=energy_kwh,
            efficiency_note=efficiency_note,
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite floats become the run format's strings."""
        # the fields as they are (a snapshot of 10,000 runs makes 10,000 of these: asdict's
        # deep copy of every value cost three times the rest); only the list is copied
        out = dict(self.__dict__)
        out["gpus"] = list(self.gpus)
        return safe_dict(out)
