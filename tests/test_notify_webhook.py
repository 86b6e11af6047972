"""The HTTP channel against a real local receiver: delivery, retries, a hanging receiver,
the bounded queue, and logs that never show the URL's secret."""

from __future__ import annotations

import json
import logging
import socket
import threading

import pytest

from mudpuppy_monitor.notify.events import Event
from mudpuppy_monitor.notify.targets import parse_target
from mudpuppy_monitor.notify.webhook import WebhookChannel, retry_after
from tests.receiver import Receiver

SECRET = "secret-token-123456"


def ev(i: int, rule: str = "spike") -> Event:
    return Event(rule, "run-a", "run-a", i, 1_700_000_000.0 + i, f"loss spiked at step {i}")


def channel(url: str, **kw) -> WebhookChannel:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    ch = WebhookChannel(parse_target(url), **kw)
    ch.start()
    return ch


def test_one_post_per_event_in_order() -> None:
    with Receiver() as rx:
        ch = channel(rx.url(), dashboard_url="http://127.0.0.1:5980")
        for i in range(3):
            ch.send(ev(i))
        got = rx.wait_for(3)
        ch.close()
        assert len(rx.requests) == 3  # nothing more after close
    assert [r.path for r in got] == [f"/hook/{SECRET}"] * 3
    assert [r.json()["step"] for r in got] == [0, 1, 2]
    assert got[0].json()["url"] == "http://127.0.0.1:5980/#run=run-a"
    assert got[0].headers["Content-Type"] == "application/json"
    assert (ch.stats.sent, ch.stats.failed, ch.stats.retries, ch.stats.dropped) == (3, 0, 0, 0)


def test_a_receiver_failing_three_times_gets_the_message_once_it_recovers(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mudpuppy_monitor.notify")
    with Receiver(statuses=[500, 500, 500]) as rx:
        ch = channel(rx.url())
        ch.send(ev(1, "crashed"))
        got = rx.wait_for(4)
        ch.close()
    assert len(got) == 4
    assert len({r.body for r in got}) == 1  # the same message each time
    assert (ch.stats.sent, ch.stats.failed, ch.stats.retries) == (1, 0, 3)
    assert "delivered after 4 attempts" in caplog.text
    assert "HTTP 500" in caplog.text
    assert SECRET not in caplog.text


def test_retry_after_is_honoured_within_the_ceiling() -> None:
    with Receiver(statuses=[429], headers={"Retry-After": "0.2"}) as rx:
        ch = channel(rx.url(), max_backoff_s=0.05)
        ch.send(ev(1))
        assert len(rx.wait_for(2)) == 2
        ch.close()
    assert ch.stats.sent == 1
    assert ch._delay(1, 0.2) == 0.05  # capped by max_backoff_s
    assert ch._delay(3, None) == 0.04  # 0.01 x 2^2
    assert (retry_after("7"), retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), retry_after("-1")) == (
        7.0,
        None,
        None,
    )


def test_a_rejecting_receiver_is_not_retried(caplog) -> None:
    with Receiver(statuses=[404, 200]) as rx:
        ch = channel(rx.url())
        ch.send(ev(1))
        ch.send(ev(2))
        got = rx.wait_for(2)
        ch.close()
    assert [r.json()["step"] for r in got] == [1, 2]  # the 404 was given up, the next one went
    assert (ch.stats.sent, ch.stats.failed, ch.stats.retries) == (1, 1, 0)
    assert "rejected (HTTP 404), not retried" in caplog.text


def test_a_redirect_is_reported_not_followed() -> None:
    with Receiver(statuses=[302], headers={"Location": "http://127.0.0.1:1/elsewhere"}) as rx:
        ch = channel(rx.url())
        ch.send(ev(1))
        rx.wait_for(1)
        ch.close()
    assert (ch.stats.sent, ch.stats.failed) == (0, 1)
    assert len(rx.requests) == 1


def test_unreachable_receiver_is_given_up_and_the_secret_never_logged(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mudpuppy_monitor.notify")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://user:pa55word@127.0.0.1:{port}/hook/{SECRET}?key={SECRET}"
    ch = channel(url, max_attempts=3)
    ch.send(ev(1))
    ch.close(timeout_s=5)
    assert (ch.stats.sent, ch.stats.failed, ch.stats.retries) == (0, 1, 2)
    assert "given up after 3 attempts" in caplog.text
    assert "Connection refused" in caplog.text or "ConnectionRefusedError" in caplog.text
    assert f"http 127.0.0.1:{port}" not in caplog.text
    for secret in (SECRET, "pa55word", "user:"):
        assert secret not in caplog.text


def test_a_hanging_receiver_never_blocks_send_and_the_queue_drops_oldest(caplog) -> None:
    with Receiver(hold=True) as rx:
        ch = channel(rx.url(), queue_size=10, timeout_s=30)
        ch.send(ev(0))
        assert rx.arrived.wait(5)  # the worker is now stuck inside a POST that never answers
        for i in range(1, 501):  # a burst while it hangs: every send returns at once
            ch.send(ev(i))
        assert ch.pending() == 10
        assert ch.stats.dropped == 490
        assert "queue full" in caplog.text
        rx.hold = False
        rx.release.set()  # the receiver recovers
        got = rx.wait_for(11)
        ch.close()
    steps = [r.json()["step"] for r in got]
    assert steps == [0, *range(491, 501)]  # the oldest were dropped, the newest kept
    first_after = got[1].json()
    assert first_after["dropped"] == 490
    assert "[490 earlier notifications lost" in first_after["text"]
    assert got[2].json()["dropped"] == 0


def test_close_gives_up_on_a_hanging_receiver_and_counts_what_was_left() -> None:
    with Receiver(hold=True) as rx:
        ch = channel(rx.url(), timeout_s=30)
        ch.send(ev(0))
        assert rx.arrived.wait(5)
        ch.send(ev(1))
        ch.send(ev(2))
        ch.close(timeout_s=0.2)  # returns although the POST in flight never ends
        assert ch.stats.dropped == 2
        ch.send(ev(3))  # after close: counted, not queued
        assert ch.stats.dropped == 3 and ch.pending() == 0


def test_the_worker_survives_a_failing_sender() -> None:
    calls = []

    def post(request, timeout):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError(f"boom while posting to {request.url}")
        return 200, None

    ch = WebhookChannel(parse_target(f"https://example.com/{SECRET}"), post=post, max_attempts=1)
    ch.start()
    ch.send(ev(1))
    ch.send(ev(2))
    ch.close(timeout_s=5)
    assert len(calls) == 2 and (ch.stats.sent, ch.stats.failed) == (1, 1)


def test_services_get_their_own_body_through_real_http() -> None:
    with Receiver() as rx:
        urls = {
            "slack": rx.url("/services/T1/B2/" + SECRET, scheme="slack+http"),
            "discord": rx.url("/api/webhooks/1/" + SECRET, scheme="discord+http"),
            "ntfy": rx.url("/" + SECRET, scheme="ntfy+http"),
        }
        channels = [channel(u, dashboard_url="http://box:5980") for u in urls.values()]
        for ch in channels:
            ch.send(ev(7, "completed"))
        got = {r.path: r for r in rx.wait_for(3)}
        for ch in channels:
            ch.close()
    slack = got[f"/services/T1/B2/{SECRET}"].json()
    assert slack["blocks"][0]["text"]["type"] == "mrkdwn" and "completed" in slack["text"]
    discord = got[f"/api/webhooks/1/{SECRET}"].json()
    assert discord["allowed_mentions"] == {"parse": []} and "run-a" in discord["content"]
    ntfy = got["/"].json()  # the JSON publish form goes to the server's root
    assert (ntfy["topic"], ntfy["click"]) == (SECRET, "http://box:5980/#run=run-a")


def test_concurrent_senders_lose_nothing_that_fits() -> None:
    with Receiver() as rx:
        ch = channel(rx.url(), queue_size=1000)
        threads = [
            threading.Thread(target=lambda k=k: [ch.send(ev(k * 100 + i)) for i in range(50)])
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = rx.wait_for(200, timeout=20)
        ch.close()
    assert sorted(json.loads(r.body)["step"] for r in got) == sorted(
        k * 100 + i for k in range(4) for i in range(50)
    )


@pytest.mark.parametrize("status", [200, 201, 204])
def test_any_2xx_is_delivered(status: int) -> None:
    with Receiver(statuses=[status]) as rx:
        ch = channel(rx.url())
        ch.send(ev(1))
        rx.wait_for(1)
        ch.close()
    assert ch.stats.sent == 1
