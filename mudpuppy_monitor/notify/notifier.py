"""The channels together: each Event goes to every channel that wants its rule, through that
channel's rate limiter. Publishing only queues (each channel has its own worker)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from mudpuppy_monitor.notify.events import Event
from mudpuppy_monitor.notify.limits import RateLimiter
from mudpuppy_monitor.notify.settings import ChannelSettings, NotifySettings
from mudpuppy_monitor.notify.targets import Target, parse_target
from mudpuppy_monitor.notify.webhook import WebhookChannel

log = logging.getLogger("mudpuppy_monitor.notify")


class Channel(Protocol):
    """Somewhere a notification goes. `send` must return at once and never raise."""

    @property
    def label(self) -> str: ...

    def start(self) -> None: ...

    def send(self, event: Event) -> None: ...

    def request_close(self) -> None:
        """Take no more; deliver what is queued (returns at once)."""

    def close(self, timeout_s: float = 2.0) -> None:
        """Wait up to timeout_s for the queue to drain, then stop."""


ChannelFactory = Callable[[Target, NotifySettings], Channel]


def webhook_channel(target: Target, settings: NotifySettings) -> Channel:
    return WebhookChannel(
        target,
        dashboard_url=settings.dashboard_url,
        queue_size=settings.queue_size,
        timeout_s=settings.timeout_s,
        max_attempts=settings.max_attempts,
        backoff_s=settings.backoff_s,
        max_backoff_s=settings.max_backoff_s,
    )


@dataclass
class Route:
    settings: ChannelSettings
    limiter: RateLimiter
    channel: Channel


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        channel_factory: ChannelFactory = webhook_channel,
    ) -> None:
        self.settings = settings
        self.routes: list[Route] = []
        for cs in settings.channels:
            target = parse_target(cs.url, cs.kind)
            channel = channel_factory(target, settings)
            self.routes.append(Route(cs, RateLimiter(cs.limits, clock), channel))
        self.published = 0  # events offered
        self.queued = 0  # deliveries handed to channels

    def wants(self, rule: str) -> bool:
        return any(rule in r.settings.rules for r in self.routes)

    def start(self) -> None:
        for r in self.routes:
            r.channel.start()
            log.info("notifications to %s", r.channel.label)

    def close(self, timeout_s: float = 2.0) -> None:
        # the channels drain together: the whole close takes about timeout_s, not one per channel
        for r in self.routes:
            r.channel.request_close()
        deadline = time.monotonic() + timeout_s
        for r in self.routes:
            r.channel.close(max(0.0, deadline - time.monotonic()))

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self.published += 1
            for r in self.routes:
                if event.rule not in r.settings.rules:
                    continue
                admitted = r.limiter.admit(event)
                if admitted is not None:
                    r.channel.send(admitted)
                    self.queued += 1

    def forget(self, run_id: str) -> None:
        for r in self.routes:
            r.limiter.forget(run_id)
