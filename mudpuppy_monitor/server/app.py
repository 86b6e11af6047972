"""`create_app(settings)`: the HTTP routes and the WebSocket over one Monitor and one GpuSampler.

Routes validate and translate; the core computes. All state lives in the `Context` made by
`create_app` and filled by the lifespan, so several apps can live in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from mudpuppy_monitor import __version__, jsonutil
from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.protocols import LiveRuns
from mudpuppy_monitor.efficiency import EfficiencyTracker
from mudpuppy_monitor.gpu import GpuSampler, open_backend
from mudpuppy_monitor.inert import inert
from mudpuppy_monitor.notify import NotificationService
from mudpuppy_monitor.server import batch, columns, compare, feed, notifications
from mudpuppy_monitor.server.hub import Hub
from mudpuppy_monitor.server.params import (
    ApiError,
    ExportFormat,
    From,
    LogTail,
    LoraPoints,
    Names,
    SampleLimit,
    SeriesPoints,
    Superseded,
    To,
    XAxis,
    validation_message,
)
from mudpuppy_monitor.server.security import SecurityMiddleware, valid_run_id
from mudpuppy_monitor.server.settings import Settings, default_web_dir

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from mudpuppy_monitor.core.parsecache import ParseCache

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


class JSON(JSONResponse):
    """Responses through jsonutil: NaN stays visible as "NaN", never a bare token or null."""

    def render(self, content: Any) -> bytes:
        return jsonutil.dumps(content)


@dataclass
class Context:
    """What one app holds, filled by `start` (the lifespan) and emptied by `stop`."""

    settings: Settings
    monitor: Monitor | None = None
    sampler: GpuSampler | None = None  # None when the backend is `none`
    gpus: feed.GpuView | None = None
    hub: Hub | None = None
    registry: CollectorRegistry | None = None
    notifications: NotificationService | None = None
    efficiency: EfficiencyTracker | None = None

    def runs(self) -> LiveRuns:
        if self.monitor is None:
            raise RuntimeError("Expected a started app, got one whose lifespan has not run")
        return self.monitor


def create_app(settings: Settings) -> FastAPI:
    ctx = Context(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start(ctx)
        try:
            yield
        finally:
            await stop(ctx)

    # no /docs: Swagger UI would load scripts from a CDN, which the CSP forbids anyway
    app = FastAPI(
        title="mudpuppy-monitor",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = ctx
    web_dir = settings.web_dir or default_web_dir()
    add_routes(app, ctx, web_dir)
    if web_dir.is_dir():
        # mounted last: a "/" mount registered before /ws would swallow the handshake
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    else:

        @app.get("/")
        async def no_dashboard() -> PlainTextResponse:
            return PlainTextResponse(f"dashboard files not found in {web_dir}", status_code=404)

    app.add_middleware(SecurityMiddleware, settings=settings)
    return app


async def start(ctx: Context) -> None:
    s = ctx.settings
    ctx.monitor = monitor = Monitor(
        Path(s.root),
        poll=s.poll,
        scan_interval_s=s.scan_interval_s,
        stall_after_s=s.stall_after_s,
        cache=_parse_cache(s),
        loader=s.loader,
    )
    s.loader = None  # taken by this monitor
    await monitor.start()
    # what the first pass read is history to the notifications: they tell what happens next
    ctx.notifications = await notifications.start_notifications(monitor, s)
    backend = open_backend(s.gpu)
    sampler = None
    if backend.kind != "none":
        sampler = ctx.sampler = GpuSampler(backend, interval_s=s.gpu_interval_s)
    # MFU, J/token, kWh: fills the summaries, and hears every GPU tick before it is taken
    ctx.efficiency = monitor.annotator = EfficiencyTracker(
        monitor,
        sampling=sampler is not None,
        sampling_reason=backend.reason,
        peak_tflops=s.peak_tflops,
        interval_s=max(s.efficiency_interval_s, 2 * s.gpu_interval_s),
    )
    if sampler is not None:
        sampler.add_listener(ctx.efficiency.observe)
    # the hub's listener comes after the tracker's: it reuses the tick's attribution
    ctx.gpus = feed.GpuView(backend, sampler, ctx.efficiency.attribution_of)
    ctx.hub = Hub(monitor, ctx.gpus, s)
    ctx.hub.start()  # listens to the sampler before it takes its first sample
    if sampler is not None:
        sampler.start()
    # the /metrics registry (and prometheus_client) are made on the first scrape: the first
    # answers of a starting daemon do not wait for them


def _parse_cache(s: Settings) -> ParseCache | None:
    if s.cache_dir is None:
        return None
    from mudpuppy_monitor.core.parsecache import ParseCache

    return ParseCache.open_or_none(
        s.cache_dir, str(s.root), lambda why: log.warning("parse cache off: %s", why)
    )


async def stop(ctx: Context) -> None:
    if ctx.hub is not None:
        await ctx.hub.stop()
    # before the Monitor: what is queued gets its moment to go out (2 s at most, off the loop)
    await notifications.stop_notifications(ctx.notifications)
    if ctx.sampler is not None:
        # joins the worker thread (which may be inside a slow driver call): not on the loop
        await asyncio.to_thread(ctx.sampler.stop)
    if ctx.gpus is not None and ctx.gpus.backend is not None:
        # after the sampler: closing the vendor library under a call can crash it
        await asyncio.to_thread(ctx.gpus.backend.close)
    if ctx.monitor is not None:
        await ctx.monitor.stop()


def error(status: int, message: str) -> JSON:
    return JSON({"error": message}, status_code=status)


# what Starlette's own errors say (the static files, a route asked with the wrong method)
HTTP_MESSAGES = {404: "not found", 405: "method not allowed"}


async def api_error(request: Request, exc: Exception) -> JSON:
    """The one error handler: a bad query parameter (400), an ApiError a route raised, or an
    HTTP error of the framework (a static file that is not there, a wrong method): every error
    body is `{"error": ...}`."""
    if isinstance(exc, RequestValidationError):
        return error(400, validation_message(exc))
    if isinstance(exc, ApiError):
        return error(exc.status, exc.message)
    if isinstance(exc, HTTPException):
        answer = error(exc.status_code, HTTP_MESSAGES.get(exc.status_code, str(exc.detail)))
        answer.headers.update(exc.headers or {})  # Allow on a 405
        return answer
    raise exc


def known_run(run_id: str, request: Request) -> str:
    """The run of the path, or 404. A dependency: FastAPI runs it before it validates the query
    parameters, so an unknown run is a 404 whatever its parameters say."""
    ctx: Context = request.app.state.ctx
    # a dict lookup: no summary is built just to say the run exists
    if not (valid_run_id(run_id) and ctx.runs().generation(run_id) is not None):
        raise ApiError(404, "no such run")
    return run_id


Run = Annotated[str, Depends(known_run)]


def add_routes(app: FastAPI, ctx: Context, web_dir: Path) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, api_error)
    app.add_exception_handler(HTTPException, api_error)
    compare.add_routes(app, ctx.runs, web_dir, JSON)

    @app.get("/healthz")
    async def healthz() -> JSON:
        return JSON({"ok": True, "version": __version__, "runs": len(ctx.runs().run_ids())})

    @app.get("/api/runs")
    def runs() -> JSON:
        return JSON({"runs": [s.to_dict() for s in ctx.runs().summaries()]})

    # The data routes are plain `def`: FastAPI runs them in its threadpool, so decimation,
    # .tolist() and the JSON encoding of a large answer do not hold up the event loop, which
    # carries the WebSocket fan-out. The core's queries are thread-safe (they take its lock).
    # The suffix routes come first: {run_id:path} is greedy, and run ids contain "/".
    @app.get("/api/runs/{run_id:path}/series")
    def series(
        run_id: Run,
        request: Request,
        x: XAxis = "step",
        start: From = None,
        to: To = None,
        points: SeriesPoints = 2000,
        names: Names = None,
    ) -> Response:
        wanted = None if names is None else [n for n in names.split(",") if n]
        # the core reads the data and its generation under one lock
        got = ctx.runs().series(
            run_id, wanted, x=x, start=start, end=to, points=points, arrays=True
        )
        if got.generation is None:  # removed since the check above
            return error(404, "no such run")
        return _series_answer(request, run_id, got.generation, x, got)

    @app.get("/api/runs/{run_id:path}/lora")
    def lora(run_id: Run, points: LoraPoints = 200) -> JSON:
        got = ctx.runs().lora(run_id, points=points)
        if got is None:  # no snapshot yet: the same keys as a full answer, all empty
            got = {"layers": [], "steps": [], "t": [], "A": [], "B": [], "update": []}
        got["t"] = feed.known_times(got.get("t") or [])
        return JSON(got)

    @app.get("/api/runs/{run_id:path}/samples")
    def samples(run_id: Run, start: From = None, to: To = None, limit: SampleLimit = 200) -> JSON:
        got = ctx.runs().samples(run_id, start, to, limit)
        if got is None:  # removed since the check above
            return error(404, "no such run")
        return JSON({"run": run_id, **got})

    @app.get("/api/runs/{run_id:path}/export")
    def export(run_id: Run, fmt: ExportFormat = "csv", superseded: Superseded = "hide") -> Response:
        if run_id in ctx.runs().loading():
            # an empty file would pass for the whole run
            raise ApiError(503, f"{run_id} is still loading; export it when it has loaded")
        chunks = ctx.runs().export(run_id, fmt=fmt, superseded=superseded == "mark")
        return StreamingResponse(
            _drain(chunks),
            media_type=EXPORT_TYPES[fmt],
            headers={"content-disposition": content_disposition(run_id, fmt)},
        )

    @app.get("/api/runs/{run_id:path}/log")
    def log(run_id: Run, tail: LogTail = 200) -> JSON:
        got = ctx.runs().log_tail(run_id, tail)
        if got is None:  # removed since the check above
            return error(404, "no such run")
        return JSON({"run": run_id, **got})

    @app.get("/api/runs/{run_id:path}")
    def run_detail(run_id: Run) -> JSON:
        detail = ctx.runs().detail(run_id)
        if detail is None:
            return error(404, "no such run")
        return JSON(_detail_json(detail))

    @app.post("/api/series")
    async def series_of_runs(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a cross-site page cannot send this type without a preflight, which is not granted
            return error(415, "content-type must be application/json")
        query = batch.parse_body(await _body(request, batch.MAX_BODY_BYTES))
        # decimation and encoding off the event loop, as for the other data routes
        body = await run_in_threadpool(lambda: jsonutil.dumps(batch.answer(ctx.runs(), query)))
        return Response(body, media_type="application/json")

    @app.get("/api/series")
    async def series_of_runs_get() -> JSON:
        return JSON(
            {"error": "use POST with a JSON body"}, status_code=405, headers={"allow": "POST"}
        )

    @app.get("/api/gpus")
    def gpus() -> JSON:
        assert ctx.gpus is not None
        return JSON(ctx.gpus.payload(ctx.runs(), history=True))

    @app.get("/api/{rest:path}")
    async def api_not_found(rest: str) -> JSON:
        return error(404, "no such route")

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from mudpuppy_monitor.server import metrics

        if ctx.registry is None:
            assert ctx.gpus is not None
            ctx.registry = metrics.build_registry(ctx.runs(), ctx.gpus, ctx.hub)
        return Response(metrics.render(ctx.registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        assert ctx.hub is not None
        await ctx.hub.serve_client(websocket)


def _series_answer(
    request: Request, run_id: str, generation: int, x: str, got: dict[str, Any]
) -> Response:
    """The columns as binary when the client asks for them (web/api.js does), else JSON; both
    straight from the store's arrays (docs/protocol.md, "Series")."""
    vary = {"vary": "Accept"}
    if columns.wants_binary(request.headers.get("accept")):
        body = columns.encode(run_id, generation, x, got)
        return Response(body, media_type=columns.MEDIA_TYPE, headers=vary)
    payload = {"run": run_id, "generation": generation, "x": x, "series": got}
    return JSON(payload, headers=vary)


def content_disposition(run_id: str, fmt: str) -> str:
    """An attachment header for any run id: headers are latin-1, ids are not (RFC 6266).

    `filename` is an ASCII fallback (other characters as `_`, no quote or backslash);
    `filename*` carries the real name, UTF-8 and percent-encoded, for every current browser.
    """
    name = inert(run_id.replace("/", "_"), "_") + "." + fmt
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _body(request: Request, limit: int) -> bytes:
    """The request body, read no further than one byte past `limit` (the caller refuses it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body larger than {limit >> 20} MiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def _detail_json(detail: dict[str, Any]) -> dict[str, Any]:
    out = dict(detail)  # the core's detail is plain data already (summary as a dict)
    # an unknown marker time is null on the wire, as everywhere (the core holds NaN)
    out["markers"] = feed.markers_json(out.get("markers") or [])
    return out


def _drain(chunks: Iterator[str]) -> AsyncIterator[bytes]:
    # The core's export generator formats every stored point: it runs in the threadpool, one
    # 64 KiB batch per hop, so a large export never blocks the event loop (and with it the
    # stream). The core changes its state in a worker thread too and copies what it exports
    # under its lock, so reading from another thread is safe.
    return iterate_in_threadpool(_batches(chunks))


def _batches(chunks: Iterator[str]) -> Iterator[bytes]:
    batch: list[str] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= 1 << 16:
            yield "".join(batch).encode("utf-8")
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode("utf-8")
