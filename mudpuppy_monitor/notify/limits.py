"""Rate limits of one channel: a cooldown per run and rule, and a budget per run.

- Cooldown: after a rule spoke for a run, the same rule stays quiet for that run for
  `cooldown_s` (a stall that flaps every two minutes is one notification, not a storm).
- Budget: at most `max_per_run` notifications per run within `window_s`, whatever the rule.
- Final statuses (completed, failed, interrupted, crashed) pass both: a run reaches one at
  most once per start, and they are the news a person waits for. They still use the budget.

What is held back is counted, and the next notification of that rule for that run says how
many were (`Event.suppressed`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable

from mudpuppy_monitor.notify.events import FINAL_RULES, Event
from mudpuppy_monitor.notify.settings import Limits


class RateLimiter:
    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic):
        self.limits = limits or Limits()
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}  # (run, rule) -> when it last spoke
        self._sent: dict[str, deque[float]] = {}  # run -> when its recent notifications went
        self._held: dict[tuple[str, str], int] = {}  # (run, rule) -> held back since
        self.held_total = 0

    def admit(self, event: Event) -> Event | None:
        """The event to send (with the count held back before it), or None to hold it."""
        now = self.clock()
        lim = self.limits
        key = (event.run, event.rule)
        sent = self._sent.setdefault(event.run, deque())
        while sent and now - sent[0] >= lim.window_s:
            sent.popleft()
        if event.rule not in FINAL_RULES:
            last = self._last.get(key)
            cooling = last is not None and now - last < lim.cooldown_s
            if cooling or len(sent) >= lim.max_per_run:
                self._held[key] = self._held.get(key, 0) + 1
                self.held_total += 1
                return None
        self._last[key] = now
        sent.append(now)
        held = self._held.pop(key, 0)
        return dataclasses.replace(event, suppressed=held) if held else event

    def forget(self, run: str) -> None:
        self._sent.pop(run, None)
        for table in (self._last, self._held):
            for key in [k for k in table if k[0] == run]:
                del table[key]
