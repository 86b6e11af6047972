"""Routes for comparing and sharing runs: the config diff and the snapshot download.

`GET /api/config-diff?runs=a,b` answers the dotted config keys that differ between the runs
and every run's flattened config (core/configdiff.py); `GET /api/snapshot?runs=a,b&view=...`
answers one self-contained HTML file of those runs (mudpuppy_monitor.snapshot). Both take
every run when `runs` is absent; an unknown id is a 404 naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from mudpuppy_monitor.core.configdiff import pick, split_ids
from mudpuppy_monitor.core.protocols import RunQueries
from mudpuppy_monitor.server.params import ApiError, RunIds, ViewState


def known_ids(runs: RunQueries, text: str | None) -> list[str]:
    """The run ids a `runs` parameter names (every run when absent), or a 404 for the first
    unknown one."""
    wanted = split_ids(text)
    known = runs.run_ids()
    if wanted is None:
        return sorted(known)
    ok, missing = pick(wanted, known)
    if missing:
        raise ApiError(404, f"no such run: {missing[0]}")
    return ok


def add_routes(
    app: FastAPI,
    runs: Callable[[], RunQueries],
    web_dir: Path,
    to_json: Callable[[Any], Response],
) -> None:
    # plain `def`: FastAPI runs them in its threadpool (a snapshot decimates every run)
    @app.get("/api/config-diff")
    def config_diff(ids: RunIds = None) -> Response:
        return to_json(runs().config_diff(known_ids(runs(), ids)))

    @app.get("/api/snapshot")
    def snapshot(ids: RunIds = None, view: ViewState = None) -> Response:
        from mudpuppy_monitor.snapshot import build_snapshot

        chosen = known_ids(runs(), ids)
        snap = build_snapshot(runs(), chosen, web_dir, view=view or None)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Response(
            snap.html,
            media_type="text/html; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="mudpuppy-snapshot-{stamp}.html"'
            },
        )
