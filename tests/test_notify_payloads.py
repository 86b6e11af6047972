"""The body each service expects: generic JSON, Slack, Discord and ntfy, field by field."""

from __future__ import annotations

import json
import math

from mudpuppy_monitor.notify.events import Event
from mudpuppy_monitor.notify.payloads import (
    DISCORD_MAX,
    build_request,
    discord_body,
    generic_body,
    iso_time,
    ntfy_body,
    run_link,
    slack_body,
)
from mudpuppy_monitor.notify.targets import parse_target

T = 1_718_000_000.5
NAN_EVENT = Event(
    "nonfinite",
    "sweep-3/lr-1e-4",
    "lr-1e-4",
    120,
    T,
    "loss is NaN at step 120",
    series="loss",
    value=math.nan,
    status="running",
)
DASH = "http://gpu-box:5980/"
LINK = "http://gpu-box:5980/#run=sweep-3%2Flr-1e-4"


def test_generic_document() -> None:
    req = build_request(parse_target("https://example.com/hook"), NAN_EVENT, DASH)
    assert req.url == "https://example.com/hook"
    assert req.headers["Content-Type"] == "application/json"
    assert "Authorization" not in req.headers
    assert json.loads(req.body) == {
        "source": "mudpuppy-monitor",
        "version": 1,
        "kind": "nonfinite",
        "run": "sweep-3/lr-1e-4",
        "name": "lr-1e-4",
        "status": "running",
        "step": 120,
        "series": "loss",
        "value": "NaN",  # never a bare NaN token, never null
        "t": T,
        "time": "2024-06-10T06:13:20.500Z",
        "title": "mudpuppy: lr-1e-4 non-finite value",
        "message": "loss is NaN at step 120",
        "text": "lr-1e-4: loss is NaN at step 120",
        "url": LINK,
        "count": 1,
        "suppressed": 0,
        "dropped": 0,
    }


def test_generic_without_dashboard_time_or_value() -> None:
    e = Event("crashed", "r", "r", None, None, "crashed: its process ended without an end event")
    body = generic_body(e, None)
    assert (body["url"], body["t"], body["time"], body["value"], body["step"]) == (None,) * 5
    assert json.loads(build_request(parse_target("https://x.org/h"), e).body)["url"] is None


def test_run_link_escapes_the_id_and_never_carries_a_token() -> None:
    assert run_link("http://h:5980", "a/b c") == "http://h:5980/#run=a%2Fb%20c"
    assert run_link(None, "a") is None
    assert run_link("", "a") is None


def test_slack_incoming_webhook_body() -> None:
    body = slack_body(NAN_EVENT, LINK)
    assert set(body) == {"text", "blocks"}
    assert body["text"] == "mudpuppy: lr-1e-4 non-finite value: lr-1e-4: loss is NaN at step 120"
    [block] = body["blocks"]
    assert block == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": (
                "*mudpuppy: lr-1e-4 non-finite value*\n"
                "lr-1e-4: loss is NaN at step 120\n"
                f"<{LINK}|Open in the dashboard>"
            ),
        },
    }


def test_slack_escapes_control_characters_and_clips_long_text() -> None:
    e = Event("failed", "r", "<b>&co</b>", 1, T, "failed at step 1: " + "x" * 5000)
    body = slack_body(e, None)
    section = body["blocks"][0]["text"]["text"]
    assert section.startswith("*mudpuppy: &lt;b&gt;&amp;co&lt;/b&gt; failed*\n")
    assert "<b>" not in body["text"] and "Open in the dashboard" not in section
    assert len(section) == 3000 and section.endswith("…")
    assert len(body["text"]) <= 3000


def test_discord_webhook_body() -> None:
    body = discord_body(NAN_EVENT, LINK)
    assert body == {
        "content": (
            "**mudpuppy: lr-1e-4 non-finite value**\n"
            + "lr-1e-4: loss is NaN at step 120\n"
            + f"<{LINK}>"
        ),
        "allowed_mentions": {"parse": []},
    }


def test_discord_content_stays_within_2000_characters_and_pings_nobody() -> None:
    e = Event("failed", "r", "@everyone *run*", 1, T, "failed at step 1: " + "y" * 5000)
    body = discord_body(e, LINK)
    content = body["content"]
    assert len(content) == DISCORD_MAX
    assert content.endswith(f"…\n<{LINK}>")  # the link survives the cut
    assert content.startswith("**mudpuppy: @everyone \\*run\\* failed**\n")
    assert body["allowed_mentions"] == {"parse": []}


def test_ntfy_json_publish_body() -> None:
    target = parse_target("https://ntfy.sh/mudpuppy-alerts")
    req = build_request(target, NAN_EVENT, DASH)
    assert req.url == "https://ntfy.sh/"  # the JSON form is POSTed to the root
    assert json.loads(req.body) == {
        "topic": "mudpuppy-alerts",
        "title": "mudpuppy: lr-1e-4 non-finite value",
        "message": "lr-1e-4: loss is NaN at step 120",
        "tags": ["warning", "mudpuppy"],
        "priority": 4,
        "click": LINK,
    }


def test_ntfy_priorities_and_tags_per_rule() -> None:
    def body(rule: str) -> dict:
        return ntfy_body(Event(rule, "r", "r", 1, T, "x"), None, 0, "t")

    assert "click" not in body("completed")
    got = {
        r: (body(r)["priority"], body(r)["tags"][0])
        for r in ("completed", "crashed", "eval_improved")
    }
    assert got == {
        "completed": (3, "white_check_mark"),
        "crashed": (4, "skull"),
        "eval_improved": (2, "star"),
    }
    for rule in ("failed", "interrupted", "stalled", "spike"):
        assert 1 <= body(rule)["priority"] <= 5


def test_authorization_and_dropped_note() -> None:
    target = parse_target("ntfy://:tk_token123@ntfy.example.org/alerts")
    req = build_request(target, NAN_EVENT, None, dropped=3)
    assert req.headers["Authorization"] == "Bearer tk_token123"
    assert json.loads(req.body)["message"] == (
        "lr-1e-4: loss is NaN at step 120 [3 earlier notifications lost: the channel was behind]"
    )
    generic = json.loads(build_request(parse_target("https://x.org/h"), NAN_EVENT, None, 1).body)
    assert generic["dropped"] == 1 and generic["text"].endswith(
        "[1 earlier notification lost: the channel was behind]"
    )


def test_iso_time_of_odd_values() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(math.nan) is None
    assert iso_time(1e300) is None
