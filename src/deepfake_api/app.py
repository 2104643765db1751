"""The application factory and its lifespan: load and warm the model once, run the engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from deepfake_api import __version__, metrics
from deepfake_api.api import batch, health, page, predict, problems, reports, subscriptions, videos
from deepfake_api.api import metrics as metrics_route
from deepfake_api.api.access import RateLimits
from deepfake_api.api.budget import BodyBudget
from deepfake_api.api.middleware import HeadAsGet, ProblemCORSMiddleware, RequestContext
from deepfake_api.config import Settings, get_settings
from deepfake_api.errors import ModelCardError
from deepfake_api.fetch import FetchPolicy, Resolver, SafeFetcher, system_resolve
from deepfake_api.logs import configure_logging, flush_logs, log_warnings, strip_dirs
from deepfake_api.model import DeepfakeModel, read_card
from deepfake_api.runtime import Runtime, build_runtime, check_subscriptions, start_jobs
from deepfake_api.server import bound_heap

log = logging.getLogger("deepfake_api")
PROBLEM_REF = "#/components/schemas/Problem"

DESCRIPTION = """Upload a face image, get back whether it looks **real**, **fake** or
**uncertain**, with a calibrated probability (`score`) that it is fake.

Every error is `application/problem+json` (RFC 9457) with a stable `type`.
The demo page is at [/](/); metrics at [/metrics](/metrics)."""


async def _load(app: FastAPI) -> None:
    """Load and warm the model off the event loop, then start the engine: the app is ready."""
    runtime: Runtime = app.state.runtime
    model, settings = runtime.model, runtime.settings
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, model.load)
        await loop.run_in_executor(None, model.warm, tuple(sorted({1, settings.max_batch_size})))
    except Exception as exc:  # liveness turns 503 so an orchestrator restarts the process
        # Told to clients by /health: the reason without the server's directories.
        app.state.load_error = strip_dirs(str(exc) if isinstance(exc, ModelCardError) else type(exc).__name__)
        log.exception("model load failed", extra={"model_path": str(model.path)})
        return
    await runtime.engine.start()
    delay = 1.0
    while True:  # a broker that is not up yet (compose, k8s) is waited for; readiness says so
        try:
            await loop.run_in_executor(None, partial(start_jobs, runtime, worker=settings.jobs_embedded_worker))
            break
        except Exception as exc:
            error = f"{type(exc).__name__}: {strip_dirs(str(exc))}"  # e.g. Redis not up yet
            log.warning("job queue not started, retrying", extra={"error": error, "retry_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    app.state.jobs, app.state.alerts, app.state.job_service = runtime.jobs, runtime.alerts, runtime.job_service
    metrics.MODEL_INFO.labels(model.name, model.version, model.sha256).set(1)
    log.info("ready", extra={"model": model.name, "version": model.version, "sha256": model.sha256})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    read_card(runtime.settings.model_path)  # a missing or mismatched card fails startup at once
    await asyncio.to_thread(check_subscriptions, runtime)  # so does a refused webhook in the settings
    loader = asyncio.create_task(_load(app), name="model-load")
    app.state.loader = loader
    try:
        yield
    finally:
        if not loader.done():
            loader.cancel()
        await app.state.fetcher.aclose()
        if runtime.jobs is not None:  # the worker finishes its frame and stops; its job is retried later
            await asyncio.to_thread(runtime.jobs.close)
        await runtime.engine.stop()
        await asyncio.to_thread(runtime.images.close)
        log.info("stopped")
        flush_logs(keep_logging=True)


def create_app(
    settings: Settings | None = None,
    model: DeepfakeModel | None = None,
    *,
    resolve: Resolver = system_resolve,
    runtime: Runtime | None = None,
) -> FastAPI:
    """The app over a runtime (built here from `settings` and `model` when not given). `resolve` is
    how /predict/url looks up host names (tests pass a stub resolver)."""
    runtime = runtime or build_runtime(settings or get_settings(), model)
    settings = runtime.settings
    log_handler = configure_logging(settings)
    log_warnings()
    bound_heap()
    app = FastAPIOffline(
        title="Deepfake image detection API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # No trailing-slash redirects: they were built from the Host header (an open redirect that
        # re-sends an upload elsewhere). /health/ is a 404 problem, not a 307.
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.log_handler = log_handler
    app.state.model = runtime.model
    app.state.engine = runtime.engine
    app.state.images = runtime.images
    app.state.load_error = None
    app.state.jobs = app.state.alerts = app.state.job_service = None  # once the model is ready
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
