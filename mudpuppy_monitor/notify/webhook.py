"""One HTTP channel: a bounded queue and a worker thread that POSTs, retrying with backoff.

`send()` only appends to the queue (under a lock held for a deque operation) and returns: a
receiver that hangs or fails holds up its own worker, never the caller. When the queue is
full the oldest notification is dropped and counted; the next one delivered says how many were
lost. The worker never raises: every failure is counted and logged with the URL redacted.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mudpuppy_monitor.notify.events import Event
from mudpuppy_monitor.notify.payloads import Request, build_request
from mudpuppy_monitor.notify.targets import Target

log = logging.getLogger("mudpuppy_monitor.notify")

# answers worth another try: timeouts, "too early", rate limits and server errors
RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
MAX_RESPONSE_READ = 64 * 1024

# (status, seconds the receiver asked us to wait or None); raises OSError when nothing came back
Post = Callable[[Request, float], "tuple[int, float | None]"]


@dataclass
class ChannelStats:
    sent: int = 0  # notifications delivered
    failed: int = 0  # notifications given up on (rejected, or out of attempts)
    retries: int = 0  # attempts after a first failed one
    dropped: int = 0  # notifications pushed out of a full queue, or left at close


class WebhookChannel:
    def __init__(
        self,
        target: Target,
        *,
        dashboard_url: str | None = None,
        queue_size: int = 100,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        post: Post | None = None,
    ) -> None:
        self.target = target
        self.dashboard_url = dashboard_url
        self.queue_size = max(1, queue_size)
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.post = post or urllib_post
        self.stats = ChannelStats()
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closing = False
        self._lost = 0  # dropped since the last delivered notification (told in the next one)
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return self.target.label

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"mudpuppy-notify-{self.target.kind}", daemon=True
        )
        self._thread.start()

    def request_close(self) -> None:
        """Take no more notifications; the worker delivers what is queued, then ends."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is queued for up to `timeout_s`, then stop (a request in flight is left
        to its own timeout; the thread is a daemon and never holds up the process's exit)."""
        self.request_close()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        self._stop.set()  # cuts a backoff wait short
        with self._cond:
            self._cond.notify_all()
            left = len(self._queue)
            self._queue.clear()
            self.stats.dropped += left
        if left:
            log.warning("%s: %d notifications not sent before shutdown", self.label, left)

    # -- producing ------------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue `event` for delivery; returns at once, drops the oldest when full."""
        with self._cond:
            if self._closing:
                self.stats.dropped += 1
                return
            first_drop = False
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
                first_drop = self._lost == 0
                self._lost += 1
            self._queue.append(event)
            self._cond.notify()
        if first_drop:
            log.warning("%s: queue full, dropping the oldest notifications", self.label)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # -- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set() or not self._queue:
                    return
                event = self._queue.popleft()
                lost, self._lost = self._lost, 0
            try:
                self._deliver(event, lost)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one message
                self.stats.failed += 1
                log.error("%s: notification failed: %s", self.label, self._describe(exc))

    def _deliver(self, event: Event, lost: int) -> None:
        request = build_request(self.target, event, self.dashboard_url, lost)
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
            wait: float | None = None
            try:
                status, wait = self.post(request, self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - connection refused, timeout, DNS, TLS ...
                problem = self._describe(exc)
            else:
                if 200 <= status < 300:
                    self.stats.sent += 1
                    if attempt > 1:
                        log.info("%s: delivered after %d attempts", self.label, attempt)
                    return
                problem = f"HTTP {status}"
                if status not in RETRY_STATUSES:
                    self.stats.failed += 1
                    log.warning("%s: notification rejected (%s), not retried", self.label, problem)
                    return
            if attempt == self.max_attempts:
                break
            delay = self._delay(attempt, wait)
            log.info(
                "%s: attempt %d of %d failed (%s), next in %.3g s",
                self.label,
                attempt,
                self.max_attempts,
                problem,
                delay,
            )
            if self._stop.wait(delay):
                with self._cond:
                    self.stats.dropped += 1
                return
        self.stats.failed += 1
        log.warning(
            "%s: notification given up after %d attempts (%s)",
            self.label,
            self.max_attempts,
            problem,
        )

    def _delay(self, attempt: int, asked: float | None) -> float:
        backoff = self.backoff_s * (2 ** (attempt - 1))
        if asked is not None and asked > backoff:
            backoff = asked  # the receiver's Retry-After, within the same ceiling
        return min(backoff, self.max_backoff_s)

    def _describe(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", None)
        text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
        return self.target.scrub(text)[:300]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: report the 3xx instead of following it (a
    followed POST would turn into a GET and lose its body)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


def urllib_post(request: Request, timeout: float) -> tuple[int, float | None]:
    """POST with the standard library: (status, Retry-After seconds or None)."""
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(
        request.url, data=request.body, headers=request.headers, method="POST"
    )
    try:
        with opener.open(req, timeout=timeout) as response:
            response.read(MAX_RESPONSE_READ)
            return int(response.status), None
    except urllib.error.HTTPError as err:
        try:
            asked = err.headers.get("Retry-After") if err.headers is not None else None
            return int(err.code), retry_after(asked)
        finally:
            err.close()


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (the HTTP-date form is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 else None
