"""`mudpuppy-monitor serve ROOT`: parse, build Settings, bind, run uvicorn.

`serve(settings)` is the one entry point (also used by the demo); `check_port(settings)` lets a
caller fail on a busy port before it starts anything else.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mudpuppy_monitor.config import add_arguments
from mudpuppy_monitor.errors import UsageError, optional_positive
from mudpuppy_monitor.gpu.backends import BACKEND_KINDS
from mudpuppy_monitor.server.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Settings,
    display_host,
    is_loopback,
)

if TYPE_CHECKING:
    from mudpuppy_monitor.notify.settings import NotifySettings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the dashboard, the HTTP API and the live stream for the runs under ROOT",
        description="Serve the dashboard, the HTTP/WebSocket API and /metrics for ROOT.",
    )
    p.add_argument(
        "root", metavar="ROOT", help="directory holding the runs (waited for if missing)"
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument(
        "--token",
        default=None,
        help="require this token on /api, /ws and /metrics "
        "(generated when --host is not a loopback address)",
    )
    p.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    p.add_argument(
        "--gpu", choices=BACKEND_KINDS, default="auto", help="GPU backend (default auto)"
    )
    p.add_argument(
        "--gpu-interval", type=float, default=1.0, metavar="S", help="GPU sample interval in s"
    )
    p.add_argument("--poll", action="store_true", help="poll files instead of inotify (NFS)")
    add_peak_argument(p)
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="where loaded runs are cached for the next start, outside ROOT "
        "(default $XDG_CACHE_HOME/mudpuppy-monitor)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="no parse cache: read every run again on start"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name this server is reached by (Host header allow-list); repeatable",
    )
    add_notify_arguments(p)
    p.set_defaults(func=cmd_serve)


def add_notify_arguments(p: argparse.ArgumentParser) -> None:
    """The notification and settings-file flags (docs/notifications.md)."""
    p.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="POST a notification to this webhook (Slack, Discord, ntfy or any URL for a generic "
        "JSON body) when a run fails, crashes, stalls, ends or logs its first NaN; repeatable",
    )
    p.add_argument(
        "--dashboard-url",
        default=None,
        metavar="URL",
        help="the dashboard's address in notification links (default: the address served)",
    )
    add_arguments(p)


def add_peak_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        metavar="X",
        help="dense peak TFLOPS of one GPU, for MFU: replaces the built-in table "
        "(devices it does not know, a MIG slice, a power-capped card)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    if not args.gpu_interval > 0:
        raise UsageError("--gpu-interval must be a positive number of seconds")
    if args.token is not None and not args.token.strip():
        raise UsageError("--token must not be empty")
    notify = notify_settings_from(args)
    optional_positive(args.peak_tflops, "--peak-tflops")
    if args.cache_dir and args.no_cache:
        raise UsageError("--cache-dir and --no-cache contradict each other")
    settings = Settings(
        root=Path(args.root).expanduser(),
        host=args.host,
        port=args.port,
        token=args.token,
        open_browser=args.open,
        gpu=args.gpu,
        gpu_interval_s=args.gpu_interval,
        poll=args.poll,
        allowed_hosts=tuple(args.allow_host),
        stall_after_s=notify.rules.stall_after_s,
        notify=notify,
        peak_tflops=args.peak_tflops,
        cache_dir=None if args.no_cache else args.cache_dir or _default_cache_dir(),
    )
    serve(settings)
    return 0


def notify_settings_from(args: argparse.Namespace) -> NotifySettings:
    """The settings file (`--config`, or found in the working directory) under the flags."""
    from mudpuppy_monitor.config import ConfigError, load_config
    from mudpuppy_monitor.notify.config import NotifyFlags, notify_settings

    flags = NotifyFlags(
        notify=tuple(args.notify),
        stall_after_s=args.stall_after,
        dashboard_url=args.dashboard_url,
    )
    try:
        config = load_config(args.config)
        notify = notify_settings(config, flags)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if config.path is not None:
        print(f"mudpuppy-monitor: settings from {config.where}", file=sys.stderr)
    return notify


def _default_cache_dir() -> str:
    from mudpuppy_monitor.core.parsecache import default_dir

    return default_dir()


def open_cache(settings: Settings) -> Any:
    """The parse cache, or None: a directory that cannot be used is one note, not a failure;
    one given with --cache-dir inside the root is a usage error (the root stays read-only)."""
    if settings.cache_dir is None:
        return None
    from mudpuppy_monitor.core.parsecache import ParseCache, inside

    if (
        inside(settings.cache_dir, str(settings.root))
        and settings.cache_dir != _default_cache_dir()
    ):
        raise UsageError(f"--cache-dir {settings.cache_dir} is inside ROOT; choose one outside it")

    def off(why: str) -> None:
        print(f"mudpuppy-monitor: parse cache off: {why}", file=sys.stderr)
        settings.cache_dir = None

    return ParseCache.open_or_none(settings.cache_dir, str(settings.root), off)


def check_root(root: Path) -> None:
    """A root that exists must be a readable directory; a missing one is waited for."""
    try:
        st = root.stat()
    except FileNotFoundError:
        return
    except PermissionError:  # a parent we may not search
        raise UsageError(f"cannot read {root}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"cannot read {root}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{root} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UsageError(f"cannot read {root}: permission denied")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port is one clear line before anything starts; uvicorn gets the socket."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot bind to {host}: {exc.strerror}") from None
    family, _, proto, _, addr = infos[0]
    # the protocol given, not 0: asyncio turns Nagle off only on connections whose socket says
    # IPPROTO_TCP, and with Nagle on, a response written in two parts (headers, then body) waits
    # for the client's delayed ACK, 40 ms on Linux, on every request after a connection's first
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to bind port {port} on {host}") from None
        raise UsageError(f"cannot bind to {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def check_port(settings: Settings) -> None:
    bind_socket(settings.host, settings.port).close()


def prepare(settings: Settings) -> Settings:
    """Fill in what serve decides: a token for a non-loopback bind."""
    check_root(Path(settings.root))
    if settings.token is None and not is_loopback(settings.host):
        # like Jupyter: exposing the daemon without a secret is never the default
        import secrets

        settings.token = secrets.token_urlsafe(24)
    return settings


def url_for(settings: Settings, port: int) -> str:
    url = f"http://{display_host(settings.host)}:{port}/"
    if settings.token:
        url += f"?token={settings.token}"
    return url


def serve(settings: Settings) -> None:
    """Run the server until Ctrl-C / SIGTERM. Prints the URL (with the token, when one is set)."""
    prepare(settings)
    sock = bind_socket(settings.host, settings.port)
    if settings.loader is None:
        # decode the backlog on the other cores while this process imports the web server
        from mudpuppy_monitor.core.prefetch import start_early

        settings.loader = start_early(str(settings.root), open_cache(settings))

    import uvicorn

    from mudpuppy_monitor.server.app import create_app
    from mudpuppy_monitor.server.notifications import describe
    from mudpuppy_monitor.server.transport import uvicorn_config

    port = sock.getsockname()[1]
    settings.port = port  # port 0: the one the kernel chose (cookie name, printed URL)
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    server = uvicorn.Server(config)
    url = url_for(settings, port)
    root = Path(settings.root)
    if not os.path.lexists(root):
        print(f"mudpuppy-monitor: {root} does not exist yet; waiting for it", file=sys.stderr)
    print(f"mudpuppy-monitor: serving {root} at {url}", flush=True)
    channels = describe(settings.notify)
    if channels:
        print(f"mudpuppy-monitor: {channels}", flush=True)
    if settings.open_browser:
        threading.Thread(target=_open_when_up, args=(server, url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _open_when_up(server: Any, url: str) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started:
        import webbrowser

        webbrowser.open(url)
