"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from deepfake_api.errors import QueueUnavailable
from deepfake_api.metrics import ALERTS_PENDING, JOBS_QUEUED, exposition
from deepfake_api.services.jobs import JobService

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    jobs: JobService | None = request.app.state.job_service
    if jobs is not None:
        try:
            for state, n in (await jobs.call(jobs.depth)).items():
                JOBS_QUEUED.labels(state).set(n)
            ALERTS_PENDING.set(await jobs.call(request.app.state.alerts.pending))
        except QueueUnavailable:  # the broker is unreachable: the other metrics are still worth serving
            pass
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
