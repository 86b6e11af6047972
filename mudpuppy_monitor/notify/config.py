"""NotifySettings from a settings file's keys and the command line (flags win).

    stall_after = 900                        # seconds; --stall-after wins
    dashboard_url = "http://gpu-box:5980"    # the link in every notification

    [notify]
    urls = ["https://hooks.slack.com/services/..."]   # channels with the defaults below
    rules = { spike = false }                # switches for every channel
    cooldown = 600                           # seconds, per channel, run and rule
    max_per_run = 10                         # per channel and run within `window` seconds
    window = 3600

    [[notify.channels]]                      # a channel with its own switches and limits
    url = "ntfy://ntfy.example.org/training"
    rules = { completed = false, eval_improved = true }

`--notify URL` (repeatable) replaces the file's list of channels; a URL that is also in the file
keeps that channel's switches and limits. Full reference: docs/notifications.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mudpuppy_monitor.config import (
    ConfigError,
    ConfigFile,
    as_count,
    as_seconds,
    as_table,
    as_text,
    check_keys,
)
from mudpuppy_monitor.notify.events import DEFAULT_RULES, RULES
from mudpuppy_monitor.notify.settings import (
    EVAL_MODES,
    ChannelSettings,
    Limits,
    NotifySettings,
    RuleSettings,
)
from mudpuppy_monitor.notify.targets import TargetError, parse_target

NOTIFY_KEYS = (
    "urls",
    "channels",
    "rules",
    "cooldown",
    "max_per_run",
    "window",
    "nonfinite_series",
    "eval_metric",
    "eval_mode",
    "eval_min_delta",
    "queue_size",
    "timeout",
    "max_attempts",
)
CHANNEL_KEYS = ("url", "kind", "rules", "cooldown", "max_per_run", "window")
MAX_CHANNELS = 32


@dataclass(frozen=True)
class NotifyFlags:
    """What the command line said; None / empty: not given."""

    notify: tuple[str, ...] = ()  # --notify URL, repeatable
    stall_after_s: float | None = None  # --stall-after S
    dashboard_url: str | None = None


@dataclass
class _Defaults:
    rules: frozenset[str] = DEFAULT_RULES
    limits: Limits = field(default_factory=Limits)


def notify_settings(
    config: ConfigFile | None = None,
    flags: NotifyFlags | None = None,
    default_dashboard_url: str | None = None,
) -> NotifySettings:
    config = config or ConfigFile(None)
    flags = flags or NotifyFlags()
    top, where = config.table, config.where
    section = as_table(top.get("notify", {}), where, "notify")
    check_keys(section, NOTIFY_KEYS, where, "notify.")

    defaults = _Defaults(
        rules=_rules(section.get("rules", {}), DEFAULT_RULES, where, "notify.rules"),
        limits=_limits(section, Limits(), where, "notify."),
    )
    from_file = _file_channels(section, defaults, where)
    if flags.notify:
        channels = _flag_channels(flags.notify, from_file, defaults)
    else:
        channels = from_file
    if len(channels) > MAX_CHANNELS:
        raise ConfigError(f"{where}: more than {MAX_CHANNELS} notification channels")

    stall_after = None
    if flags.stall_after_s is not None:
        stall_after = as_seconds(flags.stall_after_s, "command line", "--stall-after")
    elif "stall_after" in top:
        stall_after = as_seconds(top["stall_after"], where, "stall_after")

    dashboard = flags.dashboard_url
    dashboard_where = "command line"
    if dashboard is None and "dashboard_url" in top:
        dashboard, dashboard_where = top["dashboard_url"], where
    if dashboard is None:
        dashboard, dashboard_where = default_dashboard_url, "default"
    if dashboard is not None:
        dashboard = _dashboard_url(dashboard, dashboard_where)

    n = NotifySettings()
    return NotifySettings(
        channels=tuple(channels),
        rules=_rule_settings(section, stall_after, where),
        dashboard_url=dashboard,
        queue_size=as_count(section.get("queue_size", n.queue_size), where, "notify.queue_size"),
        timeout_s=as_seconds(section.get("timeout", n.timeout_s), where, "notify.timeout"),
        max_attempts=as_count(
            section.get("max_attempts", n.max_attempts), where, "notify.max_attempts"
        ),
    )


def _file_channels(
    section: dict[str, Any], defaults: _Defaults, where: str
) -> list[ChannelSettings]:
    out: list[ChannelSettings] = []
    urls = section.get("urls", [])
    if not isinstance(urls, list):
        raise ConfigError(f"{where}: notify.urls must be a list of URLs")
    for i, url in enumerate(urls):
        key = f"notify.urls[{i}]"
        out.append(_channel(url, None, defaults.rules, defaults.limits, where, key))
    channels = section.get("channels", [])
    if not isinstance(channels, list):
        raise ConfigError(
            f"{where}: notify.channels must be a list of tables ([[notify.channels]])"
        )
    for i, raw in enumerate(channels):
        key = f"notify.channels[{i}]"
        entry = as_table(raw, where, key)
        check_keys(entry, CHANNEL_KEYS, where, f"{key}.")
        if "url" not in entry:
            raise ConfigError(f"{where}: {key} has no url")
        kind = as_text(entry["kind"], where, f"{key}.kind") if "kind" in entry else None
        rules = _rules(entry.get("rules", {}), defaults.rules, where, f"{key}.rules")
        limits = _limits(entry, defaults.limits, where, f"{key}.")
        out.append(_channel(entry["url"], kind, rules, limits, where, f"{key}.url"))
    _no_duplicates(out, where)
    return out


def _flag_channels(
    urls: Iterable[str], from_file: list[ChannelSettings], defaults: _Defaults
) -> list[ChannelSettings]:
    known = {c.url: c for c in from_file}
    out = []
    for url in urls:
        url = url.strip() if isinstance(url, str) else url
        same = known.get(url)
        if same is not None:
            out.append(same)  # the file's switches and limits for this URL
        else:
            out.append(
                _channel(url, None, defaults.rules, defaults.limits, "command line", "--notify")
            )
    _no_duplicates(out, "command line")
    return out


def _channel(
    url: Any, kind: str | None, rules: frozenset[str], limits: Limits, where: str, key: str
) -> ChannelSettings:
    if not isinstance(url, str):
        raise ConfigError(f"{where}: {key} must be a URL string")
    try:
        parse_target(url, kind)
    except TargetError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
    return ChannelSettings(url=url.strip(), kind=kind, rules=rules, limits=limits)


def _no_duplicates(channels: list[ChannelSettings], where: str) -> None:
    seen: dict[str, int] = {}
    for i, c in enumerate(channels):
        if c.url in seen:
            # the URL itself is a secret: name the positions, not the URL
            raise ConfigError(
                f"{where}: notification channels {seen[c.url] + 1} and {i + 1} have the same URL"
            )
        seen[c.url] = i


def _rules(raw: Any, base: frozenset[str], where: str, key: str) -> frozenset[str]:
    switches = as_table(raw, where, key)
    on = set(base)
    for rule, value in switches.items():
        if rule not in RULES:
            raise ConfigError(f"{where}: {key}.{rule}: unknown rule (known: {', '.join(RULES)})")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}.{rule} must be true or false")
        (on.add if value else on.discard)(rule)
    return frozenset(on)


def _limits(section: dict[str, Any], base: Limits, where: str, prefix: str) -> Limits:
    return Limits(
        cooldown_s=as_seconds(
            section.get("cooldown", base.cooldown_s), where, f"{prefix}cooldown", allow_zero=True
        ),
        max_per_run=as_count(
            section.get("max_per_run", base.max_per_run), where, f"{prefix}max_per_run"
        ),
        window_s=as_seconds(section.get("window", base.window_s), where, f"{prefix}window"),
    )


def _rule_settings(section: dict[str, Any], stall_after: float | None, where: str) -> RuleSettings:
    d = RuleSettings()
    series = section.get("nonfinite_series", list(d.nonfinite_series))
    if not isinstance(series, list) or not all(isinstance(s, str) and s for s in series):
        raise ConfigError(f"{where}: notify.nonfinite_series must be a list of series names")
    metric = as_text(section.get("eval_metric", d.eval_metric), where, "notify.eval_metric")
    if "eval_mode" in section:
        mode = section["eval_mode"]
        if mode not in EVAL_MODES:
            raise ConfigError(f"{where}: notify.eval_mode must be 'min' or 'max'")
    elif "loss" in metric:
        mode = "min"
    else:
        # accuracy, f1, bleu ... are better higher, perplexity and error rates lower: no guess
        raise ConfigError(
            f"{where}: notify.eval_metric {metric!r} needs notify.eval_mode = 'min' or 'max'"
        )
    delta = section.get("eval_min_delta", d.eval_min_delta)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta >= 0:
        raise ConfigError(f"{where}: notify.eval_min_delta must be a number >= 0")
    if not math.isfinite(delta):
        raise ConfigError(f"{where}: notify.eval_min_delta must be finite")
    return RuleSettings(
        stall_after_s=stall_after,
        nonfinite_series=tuple(series),
        eval_metric=metric,
        eval_mode=mode,
        eval_min_delta=float(delta),
    )


def _dashboard_url(value: Any, where: str) -> str:
    if isinstance(value, str):
        try:
            parts = urlsplit(value.strip())
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if ok:
            return value.strip()
    raise ConfigError(f"{where}: dashboard_url must be an http:// or https:// address")
