"""Dependencies, declared once as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from deepfake_api.alerts.delivery import Alerts
from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import ModelNotReady
from deepfake_api.model import DeepfakeModel
from deepfake_api.services.images import ImageService
from deepfake_api.services.jobs import JobService


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


async def get_jobs(request: Request) -> JobService:
    """The jobs service; 503 while the job queue is still starting."""
    jobs: JobService | None = getattr(request.app.state, "job_service", None)
    if jobs is None:
        raise ModelNotReady("The job queue is starting; retry shortly.", headers={"Retry-After": "1"})
    return jobs


async def get_alerts(request: Request, jobs: Annotated[JobService, Depends(get_jobs)]) -> Alerts:
    alerts: Alerts = request.app.state.alerts
    return alerts


JobsDep = Annotated[JobService, Depends(get_jobs)]
AlertsDep = Annotated[Alerts, Depends(get_alerts)]
