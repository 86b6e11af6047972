"""What the rules read (a run's state, its markers, its eval values) and what they decide (Event).

These small values are the seam between whatever watches the runs (the Monitor, a test) and the
rules: the rules never see a store, a file or a clock they did not get as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

# the rules, in the order the documentation lists them; the names are the config keys
FINAL_RULES = ("completed", "failed", "interrupted", "crashed")
RULES = (*FINAL_RULES, "stalled", "nonfinite", "spike", "eval_improved")
DEFAULT_RULES = frozenset(r for r in RULES if r != "eval_improved")


@dataclass(frozen=True)
class RunInfo:
    """A run as the rules see it: identity, status and where it is (from a run summary)."""

    id: str
    name: str
    status: str
    step: int | None = None
    last_event_t: float | None = None  # unix seconds of the newest event read
    pid: int | None = None
    error: str | None = None
    loss: float | None = None  # the latest training loss, for the final sentence
    generation: int = 0  # changes when the run's files were replaced or truncated


@dataclass(frozen=True)
class MarkerInfo:
    """One marker (`nonfinite`, `spike`, `restart`, `end`, `checkpoint`) as the core derives it."""

    kind: str
    step: int | None
    t: float | None
    series: str | None = None
    detail: str = ""
    value: float | None = None  # the marked value, when the caller knows it


@dataclass(frozen=True)
class EvalPoint:
    step: int
    t: float | None
    value: float


@dataclass(frozen=True)
class Event:
    """One piece of news, shared by every channel.

    `message` is a sentence about the run without its name ("loss is NaN at step 120");
    `suppressed` is set by a channel's rate limiter: how many like it were held back before it.
    """

    rule: str
    run: str
    name: str
    step: int | None
    t: float | None
    message: str
    series: str | None = None
    value: float | None = None
    status: str | None = None
    count: int = 1  # markers folded into this one event
    suppressed: int = 0

    @property
    def text(self) -> str:
        """The one-line human sentence: run name, what happened, and what was held back."""
        out = f"{self.name}: {self.message}"
        if self.suppressed:
            similar = "notification" if self.suppressed == 1 else "notifications"
            out += f" ({self.suppressed} similar {similar} held back)"
        return out


HEADLINES = {
    "completed": "completed",
    "failed": "failed",
    "interrupted": "interrupted",
    "crashed": "crashed",
    "stalled": "stalled",
    "nonfinite": "non-finite value",
    "spike": "loss spike",
    "eval_improved": "new best eval",
}


def headline(event: Event) -> str:
    """A short title: "mudpuppy: lr-1e-4 crashed"."""
    return f"mudpuppy: {event.name} {HEADLINES.get(event.rule, event.rule)}"
