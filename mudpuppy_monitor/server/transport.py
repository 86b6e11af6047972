"""The uvicorn configuration of the daemon, with two bounds on what a connection may hold.

uvicorn leaves two kinds of connection open indefinitely:

- a client that sends a request head slowly, or part of one and then nothing (slowloris): no
  timer runs until a first request is complete. `HeadTimeoutH11Protocol` closes a connection that
  has not delivered a complete request head `HEAD_TIMEOUT_S` after it opened or after its last
  response (a request being answered, or a WebSocket, is never cut).
- a WebSocket the server ends while the peer has stopped reading: `transport.close()` waits for
  the write buffer to drain, which never happens, so the socket and its kernel buffers stay until
  the peer exits. `AbortingWebSocketProtocol` aborts the transport when it is still open
  `CLOSE_GRACE_S` after the handler returned.

Both are subclasses of uvicorn's own protocols; where this uvicorn lacks them, its defaults are
used. Figures: docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mudpuppy_monitor.server.settings import Settings

log = logging.getLogger("mudpuppy_monitor.server")

HEAD_TIMEOUT_S = 10.0
CLOSE_GRACE_S = 2.0
# connections (HTTP and WebSocket together) beyond which new requests are answered 503
LIMIT_CONCURRENCY = 1000


def _http_protocol() -> type | str:
    try:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError:  # pragma: no cover - every supported uvicorn has it
        return "auto"

    class HeadTimeoutH11Protocol(H11Protocol):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed already, or upgraded to a WebSocket
            if self.conn.their_state is h11.IDLE:  # still no complete request head
                log.info(
                    "closing a connection that sent no complete request in %.0f s", HEAD_TIMEOUT_S
                )
                transport.close()

    return HeadTimeoutH11Protocol


def _ws_protocol() -> type | str:
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:  # uvicorn < 0.35, or websockets too old for it
        return "auto"

    class AbortingWebSocketProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc]
        async def run_asgi(self) -> None:
            await super().run_asgi()
            if not self.disconnected:
                self.loop.call_later(CLOSE_GRACE_S, self._abort_if_open)

        def _abort_if_open(self) -> None:
            if not self.disconnected:  # the peer never took the close: drop its buffers
                self.transport.abort()

    return AbortingWebSocketProtocol


def uvicorn_config(app: Any, settings: Settings) -> Any:
    """The one uvicorn.Config of `serve` (and of the tests' live servers)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        http=_http_protocol(),
        ws=_ws_protocol(),
        ws_per_message_deflate=False,  # costs CPU per client and per message
        limit_concurrency=LIMIT_CONCURRENCY,
        timeout_graceful_shutdown=max(1, round(settings.graceful_shutdown_s)),
        lifespan="on",
    )
