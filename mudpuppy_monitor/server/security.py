"""Who may talk to the daemon: Host allow-list, token, WebSocket Origin, response headers.

One pure ASGI middleware, so HTTP and WebSocket requests pass the same checks (Starlette's
CORS middleware does nothing for WebSockets, and a check inside each route is easy to forget).
Decisions are written down in docs/security.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from mudpuppy_monitor.core.discovery import valid_run_id as valid_run_id
from mudpuppy_monitor.server.settings import Settings, is_wildcard

Scope = dict[str, Any]
Message = dict[str, Any]

PROTECTED_PREFIXES = ("/api", "/ws", "/metrics")
PUBLIC_PATHS = frozenset({"/healthz"})
TOKEN_PARAM = "token"

TOKEN_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>mudpuppy-monitor: token required</title>"
    b"<h1>Token required</h1><p>This mudpuppy-monitor needs its token. Open the URL that "
    b"<code>mudpuppy-monitor serve</code> printed (it ends in <code>/?token=...</code>); "
    b"the browser keeps it in a cookie from then on.</p>"
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self' {ws}; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
)


def cookie_name(port: int) -> str:
    # Cookies ignore the port: two daemons on one host must not overwrite each other's token.
    return f"mudpuppy_token_{port}"


def tokens_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def split_host(value: str) -> str:
    """`Host` header -> host name without port, lower case, IPv6 without brackets; "" when the
    header is malformed (a port that is not a number, stray characters)."""
    value = value.strip().lower()
    port = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return ""
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return ""
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":", 1)
    else:
        host = value
        if ":" in host:  # a bare IPv6 literal (only in settings, never valid in a Host header)
            return host if _is_ip(host) else ""
    if port and not port.isdigit():
        return ""
    host = host.rstrip(".")
    if not host or not all(c.isalnum() or c in "-._:" for c in host):
        return ""
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_host_names(settings: Settings) -> frozenset[str]:
    """Names the Host header may carry. IP literals are always accepted: DNS rebinding needs a
    name the attacker controls, so only names are worth a list."""
    names = {"localhost"}
    names.update(split_host(h) for h in settings.allowed_hosts)
    host = split_host(settings.host)
    if host and not is_wildcard(settings.host):
        names.add(host)
    if is_wildcard(settings.host):
        for name in (socket.gethostname(), socket.getfqdn()):
            names.add(name.lower().rstrip("."))
    return frozenset(n for n in names if n)


def host_allowed(host_header: str | None, names: Iterable[str]) -> bool:
    if not host_header:
        return False
    host = split_host(host_header)
    return bool(host) and (_is_ip(host) or host in names)


def origin_matches(origin: str, host_header: str) -> bool:
    """A WebSocket Origin must be this very server (scheme http(s), same host and port)."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    return parts.netloc.lower() == host_header.strip().lower()


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of cookie `name` in a Cookie header, parsed by hand.

    Cookies are shared by every port of a host, so the header also carries other apps' cookies,
    and `http.cookies.SimpleCookie` stops at the first value it finds malformed (quotes, spaces,
    JSON such as `a={"k":1}`), losing ours when it comes after. Browsers send `name=value`
    pairs separated by `;`: split on `;`, then on the first `=`.
    """
    out: list[str] = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out.append(value)
    return out


# characters kept as they are in a redirect path; everything else (backslash, spaces,
# non-ASCII, control bytes) is percent-encoded, and "%" stays so existing escapes survive
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def redirect_path(scope: Scope) -> str:
    """The request path for a same-site `Location`: the raw path, percent-encoded, with exactly
    one leading `/`. `//evil.example` (or `/\\evil.example`, which browsers read the same way)
    would otherwise be a network-path reference to another site."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raw = scope.get("path", "").encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    return "/" + quote(raw, safe=_PATH_SAFE).lstrip("/")


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        out.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    return out


class SecurityMiddleware:
    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.token = settings.token
        self.cookie = cookie_name(settings.port)
        self.names = allowed_host_names(settings)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if not host_allowed(host, self.names):
            await self._deny(scope, send, 400, "host not allowed")
            return
        if kind == "websocket":
            origin = headers.get("origin")
            if origin is not None and not origin_matches(origin, host):
                await self._deny(scope, send, 403, "origin not allowed")
                return
        path: str = scope.get("path", "")
        token_in_query, query_rest = self._query_token(scope)
        if self.token is not None and path not in PUBLIC_PATHS:
            if not self._authorized(headers, token_in_query):
                await self._deny(scope, send, 401, "token required")
                return
            if token_in_query is not None and kind == "http":
                if not path.startswith(PROTECTED_PREFIXES) and scope.get("method") == "GET":
                    # a page opened from the printed URL: keep the token out of the address
                    # bar and the history, the cookie carries it from now on
                    location = redirect_path(scope) + (f"?{query_rest}" if query_rest else "")
                    await self._redirect(send, location, self._set_cookie(scope))
                    return
                send = self._with_headers(send, scope, [self._set_cookie(scope)])
                await self.app(scope, receive, send)
                return
        if kind == "http":
            send = self._with_headers(send, scope, [])
        await self.app(scope, receive, send)

    def _query_token(self, scope: Scope) -> tuple[str | None, str]:
        raw = scope.get("query_string", b"").decode("latin-1")
        if TOKEN_PARAM not in raw:
            return None, raw
        pairs = parse_qsl(raw, keep_blank_values=True)
        token = next((v for k, v in pairs if k == TOKEN_PARAM), None)
        rest = urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM])
        return token, rest

    def _authorized(self, headers: dict[str, str], token_in_query: str | None) -> bool:
        assert self.token is not None
        candidates: list[str] = []
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        if "cookie" in headers:
            candidates.extend(cookie_values(headers["cookie"], self.cookie))
        if token_in_query is not None:
            candidates.append(token_in_query)
        # every candidate is compared, so the timing does not tell which one was tried
        ok = False
        for c in candidates:
            ok = tokens_equal(c, self.token) or ok
        return ok

    def _set_cookie(self, scope: Scope) -> tuple[bytes, bytes]:
        secure = "; Secure" if scope.get("scheme") in ("https", "wss") else ""
        value = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        return b"set-cookie", value.encode("latin-1")

    def _with_headers(self, send: Any, scope: Scope, extra: list[tuple[bytes, bytes]]) -> Any:
        added = security_headers(scope) + extra

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + added
            await send(message)

        return wrapped

    async def _redirect(self, send: Any, location: str, cookie: tuple[bytes, bytes]) -> None:
        headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), cookie]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _deny(self, scope: Scope, send: Any, status: int, reason: str) -> None:
        body = b'{"error":"' + reason.encode() + b'"}'
        ctype = b"application/json"
        path = scope.get("path", "")
        if status == 401 and scope["type"] == "http" and not path.startswith(PROTECTED_PREFIXES):
            # a person opening the dashboard without the token: tell them where it is
            body, ctype = TOKEN_PAGE, b"text/html; charset=utf-8"
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "websocket":
            # a denial response before accept: the client sees this status, not a bare close
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {"type": "websocket.http.response.start", "status": status, "headers": headers}
                )
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + security_headers(scope),
            }
        )
        await send({"type": "http.response.body", "body": body})


def security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    host = _headers(scope).get("host", "")
    ws = f"ws://{host} wss://{host}" if host else ""
    return [
        (b"content-security-policy", CSP.format(ws=ws).encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
