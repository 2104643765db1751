"""Dependencies, declared once as Annotated aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import ModelNotReady, QueueUnavailable
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.model import DeepfakeModel
from deepfake_api.services.images import ImageService

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


async def get_images(request: Request) -> ImageService:
    images: ImageService = request.app.state.images
    return images


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
ModelDep = Annotated[DeepfakeModel, Depends(get_model)]
ImagesDep = Annotated[ImageService, Depends(get_images)]


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
