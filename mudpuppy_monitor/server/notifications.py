"""Notifications next to the Monitor: the NotificationService started and stopped by the lifespan.

The service does its bookkeeping on the event loop and its HTTP in one thread per channel; a
service that cannot start is reported once and the daemon serves on without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

from mudpuppy_monitor.core.protocols import LiveRuns
from mudpuppy_monitor.notify import NotificationService, NotifySettings
from mudpuppy_monitor.notify.targets import TargetError, parse_target
from mudpuppy_monitor.server.settings import Settings, base_url

log = logging.getLogger("mudpuppy_monitor.notify")


def service_settings(settings: Settings) -> NotifySettings | None:
    """What the service is given: the links point at this server unless set otherwise."""
    notify = settings.notify
    if notify is None or not notify.enabled:
        return None
    if notify.dashboard_url is None:
        notify = dataclasses.replace(notify, dashboard_url=base_url(settings))
    return notify


async def start_notifications(runs: LiveRuns, settings: Settings) -> NotificationService | None:
    notify = service_settings(settings)
    if notify is None:
        return None
    service = NotificationService(runs, notify)
    try:
        await service.start()
    except Exception:  # noqa: BLE001 - notifications are a nicety; the dashboard is not
        log.exception("notifications could not start; serving without them")
        with contextlib.suppress(Exception):
            await service.stop(timeout_s=0.0)
        return None
    return service


async def stop_notifications(service: NotificationService | None) -> None:
    if service is None:
        return
    try:
        await service.stop()
    except Exception:  # noqa: BLE001 - shutting down: report, never hold up the exit
        log.exception("notifications did not stop cleanly")


def describe(notify: NotifySettings | None) -> str | None:
    """One line for the console: where notifications go, with every URL's secret hidden."""
    if notify is None or not notify.enabled:
        return None
    labels = []
    for channel in notify.channels:
        try:
            labels.append(parse_target(channel.url, channel.kind).label)
        except TargetError:  # checked when the settings were read; never shown raw
            labels.append("(invalid URL)")
    n = len(labels)
    return f"notifying {n} channel{'s' if n != 1 else ''}: {', '.join(labels)}"
