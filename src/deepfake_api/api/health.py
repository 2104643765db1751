"""Liveness and readiness."""

from __future__ import annotations

import socket

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deepfake_api.api.deps import EngineDep, ModelDep
from deepfake_api.schemas import Health, HealthModel

router = APIRouter(tags=["health"])
REPLICA = socket.gethostname()


def _health(request: Request, model: ModelDep, engine: EngineDep) -> JSONResponse:
    ready = model.ready and engine.running and request.app.state.jobs is not None  # videos are served too
    body = Health(
        status="ok" if ready else "failed" if request.app.state.load_error else "starting",
        ready=ready,
        model=HealthModel(name=model.name, version=model.version) if model.card else None,
        replica=REPLICA,
        reason=request.app.state.load_error,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


_READY_DOC = {
    200: {"model": Health},
    503: {"model": Health, "description": "Model not loaded or warmed yet, or the job queue not started"},
}


@router.get(
    "/health/live",
    summary="The process is up (503 only when the model failed to load)",
    responses={200: {"model": Health}, 503: {"model": Health, "description": "Model load failed"}},
)
async def live(request: Request, model: ModelDep) -> JSONResponse:
    failed = request.app.state.load_error is not None
    body = Health(
        status="failed" if failed else "ok", ready=model.ready, replica=REPLICA, reason=request.app.state.load_error
    )
    return JSONResponse(body.model_dump(), status_code=503 if failed else 200)


@router.get("/health/ready", summary="200 once the model is loaded and warmed, 503 before", responses=_READY_DOC)
async def ready(request: Request, model: ModelDep, engine: EngineDep) -> JSONResponse:
    return _health(request, model, engine)


@router.get("/health", summary="Readiness with the served model's name and version", responses=_READY_DOC)
async def health(request: Request, model: ModelDep, engine: EngineDep) -> JSONResponse:
    return _health(request, model, engine)
