"""Notification URLs: which service a URL belongs to, where to POST, and what must never be logged.

Recognised (docs/notifications.md, "Channels"):
- `https://hooks.slack.com/services/...`: a Slack incoming webhook.
- `https://discord.com/api/webhooks/ID/TOKEN` (also discordapp.com, ptb./canary.): Discord.
- `https://ntfy.sh/TOPIC`, or `ntfy://[credentials@]HOST[:PORT][/PATH]/TOPIC` for any ntfy
  server (HTTPS; `ntfy+http://` for plain HTTP on a LAN).
- `KIND+https://...` (or `+http`) forces a kind for any URL: `slack+`, `discord+`, `ntfy+`,
  `json+` (the generic document, for a URL that would otherwise be recognised).
- anything else over http(s): the generic JSON document.

Credentials in the URL (`user:password@`) become an `Authorization` header (Basic; a token alone
is sent as Bearer) and are taken out of the URL that is requested. Every part after the host is
treated as secret: webhook URLs carry their key in the path, ntfy topics are passwords.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

KINDS = ("generic", "slack", "discord", "ntfy")
# names accepted in `KIND+https://` and in a config file's `kind`
KIND_ALIASES = {"json": "generic", **{k: k for k in KINDS}}
DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
DISCORD_PATH = re.compile(r"^/api/(v\d+/)?webhooks/[^/]+/[^/]+/?$")
NTFY_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
SCHEMES = ("http", "https")
REDACTED = "***"


class TargetError(ValueError):
    """A notification URL that cannot be used; the message never contains the URL's secret."""


@dataclass(frozen=True)
class Target:
    kind: str  # generic | slack | discord | ntfy
    url: str  # what is requested (without credentials; an ntfy server's root)
    label: str  # safe to log: kind and redacted URL
    topic: str | None = None  # ntfy
    authorization: str | None = None  # the Authorization header value, from URL credentials
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        """`text` with every secret part of this target's URL replaced by ***."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def parse_target(raw: str, kind: str | None = None) -> Target:
    """A Target for a notification URL; `kind` (from a config file) forces the kind."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise TargetError("a notification URL is empty")
    if any(ord(c) < 33 for c in text):
        raise TargetError("a notification URL contains spaces or control characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise TargetError(
            "a notification URL must start with https://, http://, ntfy:// or KIND+https://"
        )
    scheme = scheme.lower()
    forced, inner = _split_scheme(scheme)
    if kind is not None:
        wanted = KIND_ALIASES.get(kind)
        if wanted is None:
            raise TargetError(f"unknown notification kind {kind!r} (known: {', '.join(KINDS)})")
        if forced is not None and forced != wanted:
            raise TargetError(f"notification kind {kind!r} contradicts its URL's {scheme}://")
        forced = wanted
    try:
        parts = urlsplit(f"{inner}://{rest}")
        host = parts.hostname
        port = parts.port
    except ValueError:  # a bad port, an unbalanced [IPv6] bracket
        raise TargetError(
            f"a {scheme}:// notification URL is malformed (check its host and port)"
        ) from None
    if not host:
        raise TargetError(f"a {scheme}:// notification URL has no host")
    hostport = _hostport(host, port)
    found = forced or _recognise(host, parts.path, parts.scheme)
    secrets = _secrets((text, f"{inner}://{rest}"), parts)
    authorization = _authorization(parts.username, parts.password)
    label_url = redact_url(f"{parts.scheme}://{hostport}{parts.path}")
    label = f"{found} {label_url}"
    if found == "ntfy":
        base, _, topic = parts.path.rstrip("/").rpartition("/")
        topic = unquote(topic)
        if not NTFY_TOPIC.match(topic):
            raise TargetError(
                f"an ntfy URL for {hostport} needs a topic as its last path part "
                "(letters, digits, - and _, at most 64)"
            )
        url = urlunsplit((parts.scheme, hostport, base + "/", "", ""))
        return Target("ntfy", url, label, topic, authorization, secrets)
    url = urlunsplit((parts.scheme, hostport, parts.path or "/", parts.query, ""))
    return Target(found, url, label, None, authorization, secrets)


def redact_url(url: str) -> str:
    """scheme://host[:port]/*** : the URL without credentials, path, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    scheme = parts.scheme or "?"
    hidden = bool(parts.path.strip("/") or parts.query or parts.fragment)
    return f"{scheme}://{_hostport(host, port)}/" + (REDACTED if hidden else "")


def _split_scheme(scheme: str) -> tuple[str | None, str]:
    if scheme == "ntfy":
        return "ntfy", "https"
    if "+" in scheme:
        name, _, inner = scheme.partition("+")
        forced = KIND_ALIASES.get(name)
        if forced is None:
            raise TargetError(
                f"unknown notification kind {name!r} in {scheme}:// "
                "(known: slack+, discord+, ntfy+, json+)"
            )
        if inner not in SCHEMES:
            raise TargetError(f"{scheme}:// must be {name}+https:// or {name}+http://")
        return forced, inner
    if scheme not in SCHEMES:
        raise TargetError(
            f"a notification URL must start with https://, http://, ntfy:// or KIND+https:// "
            f"(not {scheme}://)"
        )
    return None, scheme


def _recognise(host: str, path: str, scheme: str) -> str:
    host = host.lower()
    if host == "hooks.slack.com" and path.startswith("/services/"):
        return "slack"
    if host in DISCORD_HOSTS and DISCORD_PATH.match(path):
        return "discord"
    if host == "ntfy.sh" and path.strip("/") and "/" not in path.strip("/"):
        return "ntfy"
    return "generic"


def _hostport(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def _authorization(user: str | None, password: str | None) -> str | None:
    user = unquote(user) if user else ""
    password = unquote(password) if password else ""
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return f"Basic {token}"
    if user or password:
        return f"Bearer {user or password}"
    return None


def _secrets(urls: tuple[str, ...], parts) -> tuple[str, ...]:
    """The strings that must never reach a log: the URL (as given, and as requested with its
    credentials) and everything after its host."""
    found = set(urls)
    for piece in (parts.path, parts.query, parts.username, parts.password):
        if not piece:
            continue
        found.add(piece)
        found.add(unquote(piece))
        for segment in piece.split("/"):
            if len(segment) >= 6:  # short segments ("api", "v10") are not secrets
                found.add(segment)
    found.discard("/")
    found.discard("")
    # longest first, so that the whole URL is replaced before its parts
    return tuple(sorted(found, key=len, reverse=True))
