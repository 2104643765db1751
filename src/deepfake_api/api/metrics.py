"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST

from deepfake_api.metrics import ALERTS_PENDING, JOBS_QUEUED, exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    queue = request.app.state.jobs
    if queue is not None:
        try:
            for state, n in (await run_in_threadpool(queue.depth)).items():
                JOBS_QUEUED.labels(state).set(n)
            ALERTS_PENDING.set(await run_in_threadpool(request.app.state.alerts.pending))
        except Exception:  # the broker is unreachable: the other metrics are still worth serving
            pass
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
