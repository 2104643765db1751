"""Liveness and readiness."""

from __future__ import annotations

import socket

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from deepfake_api.api.deps import EngineDep, ModelDep
from deepfake_api.schemas import Health, HealthModel

router = APIRouter(tags=["health"])
REPLICA = socket.gethostname()


def _health(model: ModelDep, engine: EngineDep) -> JSONResponse:
    ready = model.ready and engine.running
    body = Health(
        status="ok" if ready else "starting",
        ready=ready,
        model=HealthModel(name=model.name, version=model.version) if model.card else None,
        replica=REPLICA,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


_READY_DOC = {200: {"model": Health}, 503: {"model": Health, "description": "Model not loaded or warmed yet"}}


@router.get("/health/live", summary="The process is up", response_model=Health)
async def live(model: ModelDep) -> Health:
    return Health(status="ok", ready=model.ready, replica=REPLICA)


@router.get("/health/ready", summary="200 once the model is loaded and warmed, 503 before", responses=_READY_DOC)
async def ready(model: ModelDep, engine: EngineDep) -> JSONResponse:
    return _health(model, engine)


@router.get("/health", summary="Readiness with the served model's name and version", responses=_READY_DOC)
async def health(model: ModelDep, engine: EngineDep) -> JSONResponse:
    return _health(model, engine)
