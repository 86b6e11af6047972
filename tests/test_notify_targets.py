"""Notification URLs: recognising the service, where the POST goes, and redaction of secrets."""

from __future__ import annotations

import base64

import pytest

from mudpuppy_monitor.notify.targets import TargetError, parse_target, redact_url

SLACK = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/s3cretS3cretS3cret"
DISCORD = "https://discord.com/api/webhooks/123456789012345678/tok3n-s3cret_ABCDEFG"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (SLACK, "slack"),
        (
            "https://hooks.slack.com/workflows/T01/A02/345/abcdef",
            "generic",
        ),  # not an incoming webhook
        (DISCORD, "discord"),
        ("https://discordapp.com/api/webhooks/1/abc", "discord"),
        ("https://ptb.discord.com/api/v10/webhooks/1/abc/", "discord"),
        ("https://discord.com/api/users/1", "generic"),
        ("https://ntfy.sh/mudpuppy-alerts_42", "ntfy"),
        ("https://ntfy.sh/a/b", "generic"),
        ("ntfy://ntfy.example.org/training", "ntfy"),
        ("ntfy+http://192.168.1.5:8080/training", "ntfy"),
        ("slack+http://127.0.0.1:9000/services/x", "slack"),
        ("discord+https://proxy.example/any/path", "discord"),
        ("json+https://hooks.slack.com/services/T/B/X", "generic"),
        ("https://example.com/hooks/abc?x=1", "generic"),
        ("HTTP://EXAMPLE.COM/hook", "generic"),
    ],
)
def test_recognised_kinds(url: str, kind: str) -> None:
    assert parse_target(url).kind == kind


def test_ntfy_posts_json_to_the_server_root_with_the_topic() -> None:
    t = parse_target("https://ntfy.sh/mudpuppy-alerts")
    assert (t.url, t.topic) == ("https://ntfy.sh/", "mudpuppy-alerts")
    t = parse_target("ntfy://ntfy.example.org:8443/sub/path/training")
    assert (t.url, t.topic) == ("https://ntfy.example.org:8443/sub/path/", "training")
    t = parse_target("ntfy+http://[::1]:8080/training")
    assert (t.url, t.topic) == ("http://[::1]:8080/", "training")


def test_credentials_become_an_authorization_header_and_leave_the_url() -> None:
    t = parse_target("ntfy://phil:my%20pass@ntfy.example.org/alerts")
    assert t.authorization == "Basic " + base64.b64encode(b"phil:my pass").decode()
    assert "phil" not in t.url and "pass" not in t.url
    t = parse_target("ntfy://:tk_abcdefghijk@ntfy.example.org/alerts")
    assert t.authorization == "Bearer tk_abcdefghijk"
    t = parse_target("https://tk_abcdefghijk@hooks.example.com/x")
    assert (t.authorization, t.url) == ("Bearer tk_abcdefghijk", "https://hooks.example.com/x")
    assert parse_target(SLACK).authorization is None


def test_generic_keeps_path_and_query() -> None:
    t = parse_target("https://example.com/hooks/abc?token=xyz#frag")
    assert t.url == "https://example.com/hooks/abc?token=xyz"


def test_config_kind_forces_or_must_agree() -> None:
    assert parse_target("https://example.com/x", kind="slack").kind == "slack"
    assert parse_target("https://example.com/x", kind="json").kind == "generic"
    assert parse_target("slack+https://example.com/x", kind="slack").kind == "slack"
    with pytest.raises(TargetError, match="contradicts"):
        parse_target("slack+https://example.com/x", kind="discord")
    with pytest.raises(TargetError, match="unknown notification kind 'teams'"):
        parse_target("https://example.com/x", kind="teams")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hooks.slack.com/services/T/B/s3cretS3cret", "must start with"),
        ("ftp://example.com/s3cretS3cret", r"not ftp://"),
        ("https:///s3cretS3cret", "has no host"),
        ("https://exa mple.com/s3cretS3cret", "spaces"),
        ("https://example.com:99999/s3cretS3cret", "malformed"),
        ("teams+https://example.com/s3cretS3cret", "unknown notification kind 'teams'"),
        ("slack+ftp://example.com/s3cretS3cret", "slack\\+https://"),
        ("ntfy://ntfy.example.org/", "needs a topic"),
        ("ntfy://ntfy.example.org/bad.topic!s3cretS3cret", "needs a topic"),
        ("ntfy://ntfy.example.org/" + "x" * 65, "needs a topic"),
    ],
)
def test_bad_urls_are_clear_errors_without_the_secret(url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message) as err:
        parse_target(url)
    assert "s3cretS3cret" not in str(err.value)
    assert "x" * 65 not in str(err.value)


def test_redaction_keeps_only_scheme_host_and_port() -> None:
    assert redact_url(SLACK) == "https://hooks.slack.com/***"
    assert redact_url("http://user:pw@127.0.0.1:8080/a?b=c") == "http://127.0.0.1:8080/***"
    assert redact_url("https://example.com/") == "https://example.com/"
    assert redact_url("https://example.com") == "https://example.com/"
    assert redact_url("https://example.com/?token=abc") == "https://example.com/***"
    assert redact_url("http://[::1]:99999/x") == "***"


def test_label_and_scrub_hide_every_secret_part() -> None:
    t = parse_target("ntfy://phil:pa55word@ntfy.example.org/mudpuppy-secret-topic")
    assert t.label == "ntfy https://ntfy.example.org/***"
    leaked = (
        "could not reach https://phil:pa55word@ntfy.example.org/mudpuppy-secret-topic "
        "(topic mudpuppy-secret-topic, password pa55word)"
    )
    clean = t.scrub(leaked)
    for secret in ("pa55word", "mudpuppy-secret-topic"):
        assert secret not in clean
    assert clean.startswith("could not reach ***")  # the whole URL first, then its parts
    d = parse_target(DISCORD)
    assert d.label == "discord https://discord.com/***"
    assert "tok3n-s3cret_ABCDEFG" not in d.scrub(
        f"HTTP 500 for {DISCORD} (token tok3n-s3cret_ABCDEFG)"
    )
