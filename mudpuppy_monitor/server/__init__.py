"""The web server: HTTP API, WebSocket stream, security and /metrics (see docs/protocol.md)."""

from mudpuppy_monitor.server.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str):  # PEP 562: importing the package does not import FastAPI
    if name == "create_app":
        from mudpuppy_monitor.server.app import create_app

        return create_app
    raise AttributeError(name)
