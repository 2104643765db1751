"""Dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import ModelNotReady, QueueUnavailable, RateLimited, Unauthorized
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.model import DeepfakeModel

T = TypeVar("T")


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> InferenceEngine:
    engine: InferenceEngine = request.app.state.engine
    return engine


async def get_model(request: Request) -> DeepfakeModel:
    model: DeepfakeModel = request.app.state.model
    return model


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
ModelDep = Annotated[DeepfakeModel, Depends(get_model)]


def check_api_key(request: Request, settings: Settings) -> None:
    """When an API key is configured, require it (constant-time compare)."""
    if settings.api_key is None:
        return
    given = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
        raise Unauthorized("Send the API key in the X-API-Key header.", headers={"WWW-Authenticate": "X-API-Key"})


def client_address(request: Request) -> str:
    """Who is asking, for per-client limits: the peer address (the proxy's X-Forwarded-For when trusted)."""
    return request.client.host if request.client else "unknown"


def job_queue(request: Request) -> JobQueue:
    """The app's job queue; 503 while it is still starting."""
    queue: JobQueue | None = request.app.state.jobs
    if queue is None:
        raise ModelNotReady("The job queue is starting; retry shortly.", headers={"Retry-After": "1"})
    return queue


async def in_store(queue: JobQueue, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` off the event loop; an unreachable store (broker down, disk gone) is a 503."""
    try:
        return await run_in_threadpool(fn, *args)
    except queue.store.errors as exc:
        raise QueueUnavailable(
            f"The job store cannot be reached ({type(exc).__name__}); retry shortly.",
            headers={"Retry-After": str(queue.settings.jobs_retry_after_s)},
        ) from None


def check_rate_limit(request: Request) -> None:
    """Per-client limit (by client address) when DEEPFAKE_RATE_LIMIT is set."""
    limiter = request.app.state.rate_limiter
    if limiter is None:
        return
    client = client_address(request)
    if not limiter.hit(request.app.state.rate_limit, "predict", client):
        stats = limiter.get_window_stats(request.app.state.rate_limit, "predict", client)
        wait = max(1, int(stats.reset_time - time.time()) + 1)
        raise RateLimited(
            f"More than {request.app.state.rate_limit} from {client}.", headers={"Retry-After": str(wait)}
        )


def authorize(request: Request, settings: Settings) -> None:
    """The API key and rate limit checks for /predict. A plain call from the handler, not
    dependencies: FastAPI resolves dependencies anew on every request, which profiled at
    ~0.1 ms apiece on the event loop here."""
    check_api_key(request, settings)
    check_rate_limit(request)
