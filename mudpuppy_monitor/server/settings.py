"""What `serve` was asked to do, as one value: built by the CLI (or the demo, or a test)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mudpuppy_monitor.webdir import default_web_dir as default_web_dir  # re-exported

if TYPE_CHECKING:
    from mudpuppy_monitor.notify.settings import NotifySettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5980


@dataclass
class Settings:
    root: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # None on a loopback bind means "no token needed"; a non-loopback bind always gets one
    # (see `effective_token`, done by the CLI before the app is built).
    token: str | None = None
    open_browser: bool = False
    gpu: str = "auto"  # auto | nvidia | amd | fake | none
    gpu_interval_s: float = 1.0
    # efficiency (docs/efficiency.md): a dense peak per GPU for MFU instead of the table's, and
    # the shortest interval of a point of the efficiency series
    peak_tflops: float | None = None
    efficiency_interval_s: float = 10.0
    poll: bool = False
    # seconds of silence before a live run is stalled (`--stall-after`); None: learned per run
    stall_after_s: float | None = None
    # notification channels and rules (`--notify`, `--config`); None or no channel: none sent.
    # Without a dashboard_url of its own, the links point at this server.
    notify: NotifySettings | None = None
    # extra names the Host header may carry (a reverse proxy, a DNS name of this box)
    allowed_hosts: tuple[str, ...] = ()
    web_dir: Path | None = None  # None: the dashboard shipped with the package
    # WebSocket fan-out: messages held per client before it is resynced, seconds one send may
    # take before the client is dropped, resyncs within `resync_window_s` before it is dropped.
    client_queue: int = 256
    send_timeout_s: float = 10.0
    max_resyncs: int = 3
    resync_window_s: float = 30.0
    # a run that grows by more than this many points between two changes is not streamed: the
    # client sees the gap in `i0` and refetches over HTTP (a big run copied in while serving)
    max_stream_points: int = 5000
    graceful_shutdown_s: float = 3.0
    scan_interval_s: float = 1.0
    log_level: str = "warning"
    # the parse cache (docs/core.md): a directory outside the root, None for no cache
    cache_dir: str | None = None
    # worker processes already loading the backlog (core.prefetch.Loader), started by `serve`
    # before it imports the web server; the Monitor takes their results on its first pass
    loader: Any = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def base_url(settings: Settings) -> str:
    """The dashboard's address as printed and linked, without the token: `http://host:port/`."""
    return f"http://{display_host(settings.host)}:{settings.port}/"


def display_host(host: str) -> str:
    """The host to put in a printed URL: a wildcard bind is reached by the machine's name."""
    if is_wildcard(host):
        return socket.gethostname()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host
