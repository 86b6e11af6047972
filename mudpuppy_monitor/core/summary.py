"""RunSummary: the one-line picture of a run that every front end shows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mudpuppy_monitor.jsonutil import json_safe

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
    generation: int = 0
    # while the run's backlog is read in the background: {"bytes": read, "total": size}
    loading: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite floats become the run format's strings."""
        return json_safe(dataclasses.asdict(self))
