"""The application factory and its lifespan: load and warm the model once, run the engine."""

from __future__ import annotations

import asyncio
import atexit
import logging
import logging.handlers
import queue
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from deepfake_api import __version__, faces, metrics
from deepfake_api.api import batch, health, page, predict, problems, reports, subscriptions, videos
from deepfake_api.api import metrics as metrics_route
from deepfake_api.api.access import RateLimits
from deepfake_api.api.budget import BodyBudget
from deepfake_api.api.middleware import HeadAsGet, ProblemCORSMiddleware, RequestContext
from deepfake_api.config import Settings, get_settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import ModelCardError
from deepfake_api.fetch import FetchPolicy, Resolver, SafeFetcher, system_resolve
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.jobs.video_job import VideoAnalyser
from deepfake_api.model import DeepfakeModel, read_card
from deepfake_api.server import LOG_FORMAT, PathlessJsonFormatter, bound_heap, log_warnings, strip_dirs
from deepfake_api.services.images import ImageService
from deepfake_api.services.jobs import JobService

log = logging.getLogger("deepfake_api")
PROBLEM_REF = "#/components/schemas/Problem"

DESCRIPTION = """Upload a face image, get back whether it looks **real**, **fake** or
**uncertain**, with a calibrated probability (`score`) that it is fake.

Every error is `application/problem+json` (RFC 9457) with a stable `type`.
The demo page is at [/](/); metrics at [/metrics](/metrics)."""


_listener: logging.handlers.QueueListener | None = None


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is when a record is written, not as it was when the app was built:
    an app built in process (the CLI's in-process scorer, tests) outlives a swapped-out stderr."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return self.__dict__.get("_fixed") or sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        # setStream() to another stream sticks; sys.stderr itself is followed wherever it points.
        self.__dict__["_fixed"] = None if value is sys.stderr else value


def configure_logging(settings: Settings) -> logging.StreamHandler:  # type: ignore[type-arg]
    """Log records are queued on the request path and formatted and written by a listener
    thread, so the event loop never formats JSON or blocks on stderr. Returns the writer."""
    global _listener
    flush_logs()
    handler = _CurrentStderr()
    if settings.log_json:
        handler.setFormatter(PathlessJsonFormatter(LOG_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger("deepfake_api")
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(settings.log_level)
    root.propagate = False
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    return handler


def flush_logs(*, keep_logging: bool = False) -> None:
    """Write out every queued record: at exit or before reconfiguring (the writer stops), or when
    an app shuts down in a process that goes on (`keep_logging`: the writer starts again)."""
    global _listener
    if _listener is not None:
        _listener.stop()  # drains the queue, then joins the writer thread
        if keep_logging:
            _listener.start()
        else:
            _listener = None


atexit.register(flush_logs)


async def _load(app: FastAPI) -> None:
    """Load and warm the model off the event loop, then start the engine: the app is ready."""
    model: DeepfakeModel = app.state.model
    engine: InferenceEngine = app.state.engine
    settings: Settings = app.state.settings
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, model.load)
        await loop.run_in_executor(None, model.warm, tuple(sorted({1, settings.max_batch_size})))
    except Exception as exc:  # liveness turns 503 so an orchestrator restarts the process
        # Told to clients by /health: the reason without the server's directories.
        app.state.load_error = strip_dirs(str(exc) if isinstance(exc, ModelCardError) else type(exc).__name__)
        log.exception("model load failed", extra={"model_path": str(model.path)})
        return
    await engine.start()
    delay = 1.0
    while True:  # a broker that is not up yet (compose, k8s) is waited for; readiness says so
        try:
            await loop.run_in_executor(None, _start_jobs, app)
            break
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"  # e.g. Redis not up yet, or a settings subscription refused
            log.warning("job queue not started, retrying", extra={"error": error, "retry_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    metrics.MODEL_INFO.labels(model.name, model.version, model.sha256).set(1)
    log.info("ready", extra={"model": model.name, "version": model.version, "sha256": model.sha256})


def _start_jobs(app: FastAPI) -> None:
    """The job queue; with the embedded worker, its worker thread scores frames on this app's engine."""
    settings: Settings = app.state.settings
    queue = JobQueue(settings)
    if settings.jobs_embedded_worker:
        queue.runner = VideoAnalyser(queue, app.state.engine, app.state.model)
        queue.start_worker(hosted=True)
    app.state.images.events = queue.alerts.emit
    app.state.alerts = queue.alerts
    app.state.job_service = JobService(queue)
    app.state.jobs = queue


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    read_card(settings.model_path)  # a missing or mismatched card fails startup at once
    loader = asyncio.create_task(_load(app), name="model-load")
    app.state.loader = loader
    try:
        yield
    finally:
        if not loader.done():
            loader.cancel()
        await app.state.fetcher.aclose()
        if app.state.jobs is not None:  # the worker finishes its frame and stops; its job is retried later
            await asyncio.to_thread(app.state.jobs.close)
        await app.state.engine.stop()
        await asyncio.to_thread(app.state.images.close)
        log.info("stopped")
        flush_logs(keep_logging=True)


def create_app(
    settings: Settings | None = None, model: DeepfakeModel | None = None, *, resolve: Resolver = system_resolve
) -> FastAPI:
    """The app. `resolve` is how /predict/url looks up host names (tests pass a stub resolver)."""
    settings = settings or get_settings()
    log_handler = configure_logging(settings)
    log_warnings()
    bound_heap()
    model = model or DeepfakeModel(
        settings.model_path, threads=settings.inference_threads, assets_dir=settings.assets_dir
    )
    app = FastAPIOffline(
        title="Deepfake image detection API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # No trailing-slash redirects: they were built from the Host header (an open redirect that
        # re-sends an upload elsewhere). /health/ is a 404 problem, not a 307.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.log_handler = log_handler
    app.state.model = model
    app.state.load_error = None
    app.state.jobs = None  # the job queue, once the model is ready
    app.state.engine = InferenceEngine(
        model,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_batch_wait_ms,
        max_in_flight=settings.max_in_flight,
        decode_threads=settings.decode_threads,
        retry_after_s=settings.retry_after_s,
        decode=partial(_analyse, model, settings),
    )
    app.state.images = ImageService(
        app.state.engine, model, request_timeout_s=settings.request_timeout_s, retry_after_s=settings.retry_after_s
    )
    app.state.body_budget = BodyBudget(settings.body_budget_bytes)
    app.state.fetcher = SafeFetcher(fetch_policy(settings), resolve)
    app.state.rate_limits = RateLimits.from_settings(settings)
    problems.install(app)
    routers = (predict, batch, videos, reports, subscriptions, health, metrics_route, page)
    for router in (r.router for r in routers):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(page.STATIC_DIR)), name="static")
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext)
    app.openapi = partial(_openapi_with_problems, app)  # type: ignore[method-assign]
    return app


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.max_upload_bytes,
        timeout_s=settings.url_timeout_s,
        max_redirects=settings.url_max_redirects,
        allow_hosts=settings.url_allow_hosts,
        deny_hosts=settings.url_deny_hosts,
        allow_ports=settings.url_allow_ports,
    )


def _analyse(model: DeepfakeModel, settings: Settings, data: bytes) -> faces.ImageFaces:
    """The face path for one upload, in a decode worker (the model's face finder is loaded by then)."""
    assert model.finder is not None
    return faces.analyse(
        data, model.finder, max_pixels=settings.max_pixels, min_side=settings.min_side, max_faces=settings.max_faces
    )


def _openapi_with_problems(app: FastAPI) -> dict[str, Any]:
    """Error responses are documented as application/problem+json only (FastAPI adds application/json)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for ops in schema["paths"].values():
            for op in ops.values():
                for status, resp in op.get("responses", {}).items():
                    content = resp.get("content", {})
                    if status >= "400" and "application/problem+json" in content and "application/json" in content:
                        content["application/problem+json"] = content.pop("application/json")
                    elif status == "422" and list(content) == ["application/json"]:  # FastAPI's default 422
                        resp["content"] = {"application/problem+json": {"schema": {"$ref": PROBLEM_REF}}}
        predict.document_limits(schema, app.state.settings)
        app.openapi_schema = schema
    return app.openapi_schema
