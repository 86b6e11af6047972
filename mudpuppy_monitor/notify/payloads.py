"""The body each kind of channel expects, built from one Event (docs/notifications.md, "Payloads").

- generic: a small flat JSON document (run, name, kind, step, value, time, sentence, link).
- slack: `{"text": ..., "blocks": [one mrkdwn section]}` (incoming webhooks).
- discord: `{"content": ... (at most 2000 characters), "allowed_mentions": {"parse": []}}`.
- ntfy: the JSON publish form, POSTed to the server's root: `{"topic", "title", "message",
  "tags", "priority", "click"}` (JSON rather than headers: a header cannot carry a run name
  outside latin-1).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from urllib.parse import quote

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.notify.events import Event, headline
from mudpuppy_monitor.notify.targets import Target

FORMAT_VERSION = 1
DISCORD_MAX = 2000
SLACK_SECTION_MAX = 3000
NTFY_MAX = 4000  # characters; ntfy's default message limit is 4096 bytes
ELLIPSIS = "…"

NTFY_PRIORITY = {
    "crashed": 4,
    "failed": 4,
    "nonfinite": 4,
    "stalled": 4,
    "spike": 3,
    "interrupted": 3,
    "completed": 3,
    "eval_improved": 2,
}
# ntfy shows a tag that names an emoji as that emoji
NTFY_TAGS = {
    "completed": "white_check_mark",
    "failed": "x",
    "interrupted": "stop_sign",
    "crashed": "skull",
    "stalled": "hourglass",
    "nonfinite": "warning",
    "spike": "chart_with_upwards_trend",
    "eval_improved": "star",
}
DISCORD_SPECIAL = set("\\*_~`|>[]#")


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def build_request(
    target: Target, event: Event, dashboard_url: str | None = None, dropped: int = 0
) -> Request:
    """The POST for `event` on `target`; `dropped`: notifications this channel lost before it."""
    link = run_link(dashboard_url, event.run)
    if target.kind == "slack":
        body = slack_body(event, link, dropped)
    elif target.kind == "discord":
        body = discord_body(event, link, dropped)
    elif target.kind == "ntfy":
        body = ntfy_body(event, link, dropped, target.topic or "")
    else:
        body = generic_body(event, link, dropped)
    headers = {"Content-Type": "application/json", "User-Agent": "mudpuppy-monitor"}
    if target.authorization:
        headers["Authorization"] = target.authorization
    return Request(target.url, jsonutil.dumps(body), headers)


def run_link(dashboard_url: str | None, run_id: str) -> str | None:
    """The dashboard address with the run in its fragment; never carries an access token."""
    if not dashboard_url:
        return None
    return f"{dashboard_url.rstrip('/')}/#run={quote(run_id, safe='')}"


def sentence(event: Event, dropped: int = 0) -> str:
    text = event.text
    if dropped:
        text += f" [{dropped} earlier {'notification' if dropped == 1 else 'notifications'} lost: the channel was behind]"
    return text


def generic_body(event: Event, link: str | None, dropped: int = 0) -> dict:
    return {
        "source": "mudpuppy-monitor",
        "version": FORMAT_VERSION,
        "kind": event.rule,
        "run": event.run,
        "name": event.name,
        "status": event.status,
        "step": event.step,
        "series": event.series,
        "value": event.value,  # non-finite values as "NaN", "Infinity", "-Infinity"
        "t": event.t if event.t is not None and math.isfinite(event.t) else None,
        "time": iso_time(event.t),
        "title": headline(event),
        "message": event.message,
        "text": sentence(event, dropped),
        "url": link,
        "count": event.count,
        "suppressed": event.suppressed,
        "dropped": dropped,
    }


def slack_body(event: Event, link: str | None, dropped: int = 0) -> dict:
    title = _slack_escape(headline(event))
    text = _slack_escape(sentence(event, dropped))
    lines = [f"*{title}*", text]
    if link:
        lines.append(f"<{link}|Open in the dashboard>")
    section = clip("\n".join(lines), SLACK_SECTION_MAX)
    return {
        "text": clip(f"{title}: {text}", SLACK_SECTION_MAX),  # the notification's fallback
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": section}}],
    }


def discord_body(event: Event, link: str | None, dropped: int = 0) -> dict:
    tail = f"\n<{link}>" if link else ""  # <...>: a link without a preview card
    head = f"**{_discord_escape(headline(event))}**\n"
    room = DISCORD_MAX - len(head) - len(tail)
    content = head + clip(_discord_escape(sentence(event, dropped)), room) + tail
    # names and messages are data, not pings: no @everyone, role or user mention may fire
    return {"content": content, "allowed_mentions": {"parse": []}}


def ntfy_body(event: Event, link: str | None, dropped: int, topic: str) -> dict:
    body: dict = {
        "topic": topic,
        "title": headline(event),
        "message": clip(sentence(event, dropped), NTFY_MAX),
        "tags": [NTFY_TAGS.get(event.rule, "bell"), "mudpuppy"],
        "priority": NTFY_PRIORITY.get(event.rule, 3),
    }
    if link:
        body["click"] = link
    return body


def iso_time(t: float | None) -> str | None:
    if t is None or not math.isfinite(t):
        return None
    try:
        when = dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def _slack_escape(text: str) -> str:
    # the three characters Slack asks senders to escape; everything else is literal
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _discord_escape(text: str) -> str:
    return "".join("\\" + c if c in DISCORD_SPECIAL else c for c in text)
