"""The WebSocket fan-out: one producer (the core's changes and the GPU sampler), many browsers.

Every message is serialized once and the same string goes to every client that wants it. Each
client has a bounded queue and its own writer task, so a browser that stops reading fills only
its own queue: it is then resynced (queue cleared, `resync` + a fresh `snapshot`), and a client
that keeps falling behind, or whose socket does not take a message within the send timeout, is
disconnected. Publishing never awaits a socket. Wire format: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.core.protocols import Changes, LiveRuns
from mudpuppy_monitor.gpu.records import GpuSample
from mudpuppy_monitor.notify.news import News, NewsItem
from mudpuppy_monitor.server import feed
from mudpuppy_monitor.server.settings import Settings

log = logging.getLogger("mudpuppy_monitor.server")

PROTOCOL = 1
MAX_SUBSCRIBE_RUNS = 10_000
MAX_LOG_RUNS = 16  # runs whose output one client may have open at once
MAX_CLIENT_MESSAGE = 1 << 20
SNAPSHOT_MAX_AGE_S = 1.0
CLOSE_TOO_SLOW = 1013
CLOSE_RESTART = 1012
# the news is read off the event loop, in batches: changes that arrive meanwhile are merged (a
# run logging at 10 Hz is read twice a second), and silences are judged every NEWS_TICK_S
NEWS_SETTLE_S = 0.5
NEWS_TICK_S = 5.0


class Client:
    def __init__(self, ws: WebSocket, maxsize: int) -> None:
        self.ws = ws
        # str: a message; None: close after what is already queued
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=maxsize)
        self.runs: frozenset[str] | None = None  # None: all runs
        self.logs: frozenset[str] = frozenset()  # runs whose output lines it gets
        self.resync_times: deque[float] = deque()
        self.dropped = False
        # why the server ends this connection: 1013 (too slow, try again later) or 1012
        # (service restart, on shutdown); see docs/protocol.md
        self.close_code = CLOSE_TOO_SLOW
        self.close_reason = "too slow"

    def wants(self, run: str | None, kind: str = "") -> bool:
        if kind == "log":
            return run in self.logs
        return run is None or self.runs is None or run in self.runs


class HubStats:
    def __init__(self) -> None:
        self.messages = 0  # distinct messages published (each serialized once)
        self.deliveries = 0  # messages queued to clients
        self.resyncs = 0
        self.disconnects = 0  # clients dropped for being too slow
        self.connections = 0  # clients accepted since start


class Hub:
    def __init__(
        self,
        monitor: LiveRuns,
        gpus: feed.GpuView,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitor = monitor
        self.gpus = gpus
        self.settings = settings
        self.clock = clock
        self.clients: set[Client] = set()
        self.stats = HubStats()
        self.tracker = feed.ChangeTracker(
            monitor, settings.max_stream_points, log_wanted=self._log_wanted
        )
        # what is news (the notification rules, as for webhooks and the TUI): `news` messages,
        # which raise the dashboard's desktop notifications; dated by the wall clock
        self.news = News(monitor, clock=time.time, stall_after_s=settings.stall_after_s)
        self._news_pending: set[str] = set()  # runs changed since the news last read them
        self._snapshot: str | None = None
        self._snapshot_at = 0.0
        self._gpus: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # subscribe before priming: a change in between is then seen twice (harmless, the
        # cursors make the second one empty), never missed
        changes = self.monitor.subscribe()
        self.tracker.prime()
        self._read_news(set())  # the first read takes in what is there now: history
        self._task = self._loop.create_task(self._consume(changes), name="mudpuppy-hub")
        self._ticker = self._loop.create_task(self._tick_news(), name="mudpuppy-news")
        if self.gpus.sampler is not None:
            self._unlisten = self.gpus.sampler.add_listener(self.on_gpu_samples)

    async def stop(self) -> None:
        self._loop = None  # GPU samples arriving from now on are ignored
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for task in (self._task, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._ticker = None
        for client in list(self.clients):
            self._close(client, CLOSE_RESTART, "server shutting down")

    async def _consume(self, stream: AsyncIterator[Changes]) -> None:
        async for changes in stream:
            try:
                self.apply(changes)
            except Exception:  # one bad change must not end the stream for everyone
                log.exception("could not publish a change")

    # -- producing ---------------------------------------------------------------------------

    async def _tick_news(self) -> None:
        loop = asyncio.get_running_loop()
        last = time.monotonic()
        while True:
            await asyncio.sleep(NEWS_SETTLE_S)
            if not self._news_pending and time.monotonic() - last < NEWS_TICK_S:
                continue
            changed, self._news_pending = self._news_pending, set()
            last = time.monotonic()
            try:
                items = await loop.run_in_executor(None, self._read_news, changed)
            except Exception:  # noqa: BLE001 - the next round reads them again
                log.exception("could not read the news")
                self._news_pending |= changed
                continue
            self._publish_news(items)

    def _read_news(self, changed: set[str]) -> list[NewsItem]:
        return self.news.update(changed, self.monitor.run_ids())

    def apply(self, changes: Changes) -> None:
        """Turn one `Changes(added, updated, removed)` into messages and publish them."""
        for message, run in self.tracker.messages(changes):
            self.publish(message, run)
        self._news_pending |= changes.added | changes.updated

    def _publish_news(self, items: list[NewsItem]) -> None:
        for item in items:
            self.publish(feed.news_message(item))

    def on_gpu_samples(self, samples: list[GpuSample]) -> None:
        """Called by the sampler thread: hand the samples to the event loop, never block."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between check and call
            loop.call_soon_threadsafe(self._publish_gpus, samples)

    def _publish_gpus(self, samples: list[GpuSample]) -> None:
        if self._loop is None:
            return
        payload = self.gpus.payload(self.monitor, samples)
        self._gpus = payload
        self.publish({"type": "gpus", "t": payload.get("t"), **_devices_only(payload)})

    # -- fan-out -----------------------------------------------------------------------------

    def publish(self, message: dict[str, Any], run: str | None = None) -> None:
        """Serialize once, queue to every client that wants it. Never awaits."""
        kind = message["type"]
        if kind not in ("points", "log"):
            self._snapshot = None  # anything but points and lines changes a snapshot
        text = jsonutil.dumps(message).decode("utf-8")
        self.stats.messages += 1
        for client in list(self.clients):
            if client.wants(run, kind):
                self._offer(client, text)

    def _log_wanted(self, run: str) -> bool:
        return any(run in client.logs for client in self.clients)

    def snapshot_text(self) -> str:
        # shared by the clients that connect or resync together, but never older than a
        # second: summaries carry ages (last_event_age_s) that a quiet root would freeze
        now = self.clock()
        if self._snapshot is None or now - self._snapshot_at > SNAPSHOT_MAX_AGE_S:
            self._snapshot_at = now
            gpus = self._gpus
            if gpus is None:
                gpus = self.gpus.payload(self.monitor)
            runs = [s.to_dict() for s in self.monitor.summaries()]
            snap = {"type": "snapshot", "protocol": PROTOCOL, "runs": runs, "gpus": gpus}
            self._snapshot = jsonutil.dumps(snap).decode("utf-8")
        return self._snapshot

    def _offer(self, client: Client, text: str) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
            self.stats.deliveries += 1
        except asyncio.QueueFull:
            self._resync(client)

    def _resync(self, client: Client) -> None:
        now = self.clock()
        times = client.resync_times
        while times and now - times[0] > self.settings.resync_window_s:
            times.popleft()
        times.append(now)
        if len(times) > self.settings.max_resyncs:
            log.info("websocket client too slow, disconnecting")
            self.stats.disconnects += 1
            self._close(client)
            return
        self.stats.resyncs += 1
        _clear(client.queue)
        client.queue.put_nowait(jsonutil.dumps({"type": "resync"}).decode("utf-8"))
        client.queue.put_nowait(self.snapshot_text())

    def _close(self, client: Client, code: int = CLOSE_TOO_SLOW, reason: str = "too slow") -> None:
        """Stop sending to a client: its writer ends, which ends its connection."""
        if client.dropped:
            return
        client.dropped = True
        client.close_code, client.close_reason = code, reason
        _clear(client.queue)
        client.queue.put_nowait(None)

    # -- one connection ----------------------------------------------------------------------

    async def serve_client(self, ws: WebSocket) -> None:
        await ws.accept()
        client = Client(ws, self.settings.client_queue)
        # registered and given its snapshot with no await in between: every later change
        # reaches its queue after the snapshot, none is lost in the gap
        self.clients.add(client)
        self.stats.connections += 1
        client.queue.put_nowait(self.snapshot_text())
        writer = asyncio.create_task(self._writer(client))
        reader = asyncio.create_task(self._reader(client))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.clients.discard(client)
            client.dropped = True
            for task in (writer, reader):
                task.cancel()
            for task in (writer, reader):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _writer(self, client: Client) -> None:
        timeout = self.settings.send_timeout_s
        try:
            while True:
                text = await client.queue.get()
                if text is None:
                    break
                await _with_timeout(client.ws.send_text(text), timeout)
        except asyncio.TimeoutError:
            if not client.dropped:  # else already counted when it was dropped
                log.info("websocket send timed out, disconnecting")
                self.stats.disconnects += 1
                client.dropped = True
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away; the reader sees it too
        # going away on purpose: say why, but do not wait on a socket that does not drain
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                client.ws.close(code=client.close_code, reason=client.close_reason), 1.0
            )

    async def _reader(self, client: Client) -> None:
        """Reads client messages; returning means the client disconnected."""
        while True:
            message = await client.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None and message.get("bytes") is not None:
                data = message["bytes"].decode("utf-8", "replace")
            if data:
                self._handle_client_message(client, data)

    def _handle_client_message(self, client: Client, data: str) -> None:
        if len(data) > MAX_CLIENT_MESSAGE:
            return
        try:
            obj = jsonutil.loads(data)
        except Exception:
            return  # not JSON: ignored, the stream goes on
        if not isinstance(obj, dict):
            return
        if obj.get("type") == "logs":
            logs = obj.get("runs")
            if isinstance(logs, list) and len(logs) <= MAX_LOG_RUNS:
                client.logs = frozenset(r for r in logs if isinstance(r, str))
            return
        if obj.get("type") != "subscribe":
            return
        runs = obj.get("runs")
        if runs is None:
            client.runs = None
        elif isinstance(runs, list) and len(runs) <= MAX_SUBSCRIBE_RUNS:
            client.runs = frozenset(r for r in runs if isinstance(r, str))


async def _with_timeout(coro: Awaitable[None], seconds: float) -> None:
    # asyncio.timeout (3.11+) runs the send in this task; wait_for would wrap every single
    # message of every client in a task of its own
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:
        await asyncio.wait_for(coro, seconds)
        return
    async with timeout(seconds):
        await coro


def _clear(queue: asyncio.Queue[Any]) -> None:
    while True:
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            return


def _devices_only(payload: dict[str, Any]) -> dict[str, Any]:
    return {"devices": payload.get("devices", []), "attribution": payload.get("attribution", {})}
