"""What is news for a person watching: the notification rules, fed by a front end's own reads.

The same RuleEngine as the daemon's webhooks decides (a failure, a crash, a stall, the first NaN,
a spike, a finished run; what was there when watching began is history), and a rate limiter with
a channel's defaults keeps a burst from becoming a storm. The terminal view shows the newest piece
of news in its alert lines and, with `--bell`, rings the terminal bell once per frame that has
some; the daemon streams each piece to the dashboard as a `news` message, which raises its desktop
notifications, tab-title count and tone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mudpuppy_monitor.notify.events import Event
from mudpuppy_monitor.notify.limits import RateLimiter
from mudpuppy_monitor.notify.rules import RuleEngine
from mudpuppy_monitor.notify.settings import RuleSettings
from mudpuppy_monitor.notify.source import MonitorSource, RunQueries


@dataclass(frozen=True)
class _Changes:
    added: frozenset[str]
    updated: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True)
class NewsItem:
    t: float  # when the view noticed it (its clock)
    run: str
    rule: str
    text: str  # "alpha: loss is NaN at step 120"
    name: str = ""  # the run's name
    step: int | None = None  # where it happened, when known
    event_t: float | None = None  # unix time of what it is about, when known
    message: str = ""  # the sentence without the run's name: "loss is NaN at step 120"


class News:
    def __init__(
        self,
        runs: RunQueries,
        *,
        clock: Callable[[], float],
        stall_after_s: float | None = None,
        keep: int = 5,
    ) -> None:
        self.clock = clock
        self.engine = RuleEngine(RuleSettings(stall_after_s=stall_after_s), clock=clock)
        self.source = MonitorSource(runs, self.engine)
        self.limiter = RateLimiter(clock=clock)
        self.recent: deque[NewsItem] = deque(maxlen=keep)
        self._known: set[str] | None = None

    def update(self, changed: Iterable[str], ids: Iterable[str]) -> list[NewsItem]:
        """The news of one frame: `changed` from the refresh, `ids` every run there is now."""
        now_ids = set(ids)
        if self._known is None:
            self.source.prime()  # the first frame is what was there: history
            self._known = now_ids
            return []
        added = now_ids - self._known
        changes = _Changes(
            added=frozenset(added),
            updated=frozenset((set(changed) & now_ids) - added),
            removed=frozenset(self._known - now_ids),
        )
        self._known = now_ids
        for run_id in changes.removed:
            self.limiter.forget(run_id)
        events = self.source.changed(changes) + self.source.tick()
        admitted = (self.limiter.admit(e) for e in events)
        fresh = [self._item(e) for e in admitted if e is not None]
        # in the order it happened (one read may find a NaN and the run's end together)
        fresh.sort(key=lambda item: math.inf if item.event_t is None else item.event_t)
        self.recent.extend(fresh)
        return fresh

    def _item(self, event: Event) -> NewsItem:
        return NewsItem(
            self.clock(),
            event.run,
            event.rule,
            event.text,
            event.name,
            event.step,
            event.t,
            event.message,
        )
