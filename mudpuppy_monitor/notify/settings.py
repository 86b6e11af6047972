"""What notifications were asked for, as values: built by the config loader (or a test)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mudpuppy_monitor.notify.events import DEFAULT_RULES

EVAL_MODES = ("min", "max")


@dataclass(frozen=True)
class RuleSettings:
    """How the shared rules decide what is news (docs/notifications.md, "Rules")."""

    # seconds without an event before a running run counts as stalled; None: the status
    # machine's own window, max(60 s, 10 x the usual gap between events)
    stall_after_s: float | None = None
    # the series whose first non-finite value is news
    nonfinite_series: tuple[str, ...] = ("loss", "grad_norm")
    eval_metric: str = "eval_loss"
    eval_mode: str = "min"  # min: lower is better; max: higher is better
    eval_min_delta: float = 0.0  # an improvement must beat the best by more than this


@dataclass(frozen=True)
class Limits:
    """Per channel and run: how often it may speak (docs/notifications.md, "Rate limits")."""

    cooldown_s: float = 600.0  # one notification per rule and run within this many seconds
    max_per_run: int = 10  # notifications per run within `window_s` (final statuses exempt)
    window_s: float = 3600.0


@dataclass(frozen=True)
class ChannelSettings:
    url: str
    kind: str | None = None  # None: recognised from the URL
    rules: frozenset[str] = DEFAULT_RULES
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class NotifySettings:
    channels: tuple[ChannelSettings, ...] = ()
    rules: RuleSettings = field(default_factory=RuleSettings)
    # where the dashboard is reached from where notifications are read ("http://gpu-box:5980");
    # None: payloads carry no link
    dashboard_url: str | None = None
    queue_size: int = 100  # notifications held per channel while it is slow or down
    timeout_s: float = 10.0  # one HTTP attempt
    max_attempts: int = 6  # per notification, with exponential backoff between them
    backoff_s: float = 1.0  # the first wait; doubled each time, at most `max_backoff_s`
    max_backoff_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.channels)
