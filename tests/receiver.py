"""A tiny webhook receiver for tests: a real HTTP server on a free loopback port, in a thread.

It records every POST (path, headers, body) and answers from a script: a list of statuses
used one per request (then 200), optional extra headers, and a `hold` mode in which a request
is kept waiting, unanswered, until the test releases it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(
        self,
        statuses: list[int] | None = None,
        headers: dict[str, str] | None = None,
        hold: bool = False,
    ) -> None:
        self.statuses = list(statuses or [])
        self.extra_headers = dict(headers or {})
        self.hold = hold
        self.requests: list[Received] = []
        self.arrived = threading.Event()  # set when a held request is waiting
        self.release = threading.Event()
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook/secret-token-123456", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """The first n requests, waiting up to `timeout` s for them (fewer if they never came)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.requests)

    def _record(self, received: Received) -> int:
        with self._cond:
            self.requests.append(received)
            self._cond.notify_all()
            return self.statuses.pop(0) if self.statuses else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._record(Received(self.path, dict(self.headers), body))
                if receiver.hold:
                    receiver.arrived.set()
                    receiver.release.wait(30)
                try:
                    self.send_response(status)
                    for k, v in receiver.extra_headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting: nothing to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
