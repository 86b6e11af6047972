"""Notifications: rules that decide what is news, and channels that tell a person about it.

See docs/notifications.md. Nothing here imports the server, the TUI or the core: the rules read
runs through the small `RunQueries` protocol, so any front end can feed them.
"""

from __future__ import annotations

from mudpuppy_monitor.notify.config import NotifyFlags, notify_settings
from mudpuppy_monitor.notify.events import RULES, Event
from mudpuppy_monitor.notify.notifier import Notifier
from mudpuppy_monitor.notify.rules import RuleEngine
from mudpuppy_monitor.notify.settings import NotifySettings
from mudpuppy_monitor.notify.source import NotificationService

__all__ = [
    "RULES",
    "Event",
    "NotificationService",
    "Notifier",
    "NotifyFlags",
    "NotifySettings",
    "RuleEngine",
    "notify_settings",
]
