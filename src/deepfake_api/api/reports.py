"""HTML reports to keep: GET /reports/{id} (an image analysed with `report=true`) and
GET /jobs/{id}/report (a finished video job). Each exists only while its result does: an image's
report is stored only when asked for at request time, in the job store with the job results' TTL
(`jobs_result_ttl_s`); a video's is rendered from the job while the job is kept."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from deepfake_api import report
from deepfake_api.api import access
from deepfake_api.api.responses import PROBLEM
from deepfake_api.errors import ModelNotReady, QueueUnavailable, ReportNotFound
from deepfake_api.jobs.video_job import frame_blob
from deepfake_api.preprocess import decode_image
from deepfake_api.schemas import Prediction, ReportLink

router = APIRouter(dependencies=[Depends(access.jobs)], tags=["reports"])
KIND = "report"
HTML = {200: {"content": {"text/html": {}}, "description": "A self-contained, printable HTML page"}}
REPORT_EXPLAINED = (
    "An HTML page with no external assets (images inline, no script): the image with its face boxes and "
    "heatmaps (when explained), the verdict, each face's scores, kind and detector agreement, the model card and "
    "what the labels promise. Printable."
)


def _queue(request: Request) -> Any:
    """The app's job queue (its store keeps the reports); 503 while it is still starting."""
    queue = getattr(request.app.state, "jobs", None)
    if queue is None:
        raise ModelNotReady("The job queue is starting; retry shortly.", headers={"Retry-After": "1"})
    return queue


async def _store(queue: Any, fn: Any, *args: Any) -> Any:
    """`fn(*args)` on the store, off the event loop; an unreachable store is a 503."""
    try:
        return await run_in_threadpool(fn, *args)
    except queue.store.errors as exc:
        raise QueueUnavailable(
            f"The job store cannot be reached ({type(exc).__name__}); retry shortly.", headers={"Retry-After": "1"}
        ) from None


def _html(page: str) -> Response:
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "private, no-store",
            "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
        },
    )


async def keep_image_report(request: Request, data: bytes | bytearray, prediction: Prediction) -> Prediction:
    """Render the report of `prediction` over the image's pixels and keep it for the job results' TTL:
    the prediction with its `report` link. Called only when the client asked (`report=true`)."""
    queue = _queue(request)
    settings = request.app.state.settings
    card = request.app.state.model.card

    def render() -> str:
        rgb = decode_image(bytes(data), max_pixels=settings.max_pixels, min_side=settings.min_side).rgb
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return report.image_report(prediction.model_dump(mode="json"), rgb, card, created=created)

    page = await run_in_threadpool(render)
    t = time.time()
    doc: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "kind": KIND,
        "state": KIND,
        "created_at": t,
        "updated_at": t,
        "expires_at": t + settings.jobs_result_ttl_s,
        "request_id": prediction.request_id,
        "html": page,
    }
    await _store(queue, queue.store.create, doc)
    link = ReportLink(id=doc["id"], url=f"/reports/{doc['id']}", expires_at=doc["expires_at"])
    return prediction.model_copy(update={"report": link})


@router.get(
    "/reports/{report_id}",
    summary="The kept HTML report of an image analysed with `report=true`",
    description=REPORT_EXPLAINED + " Kept for `jobs_result_ttl_s` after the analysis, then 404.",
    response_class=Response,
    responses={**HTML, 404: {**PROBLEM, "description": "Unknown or expired report"}},
)
async def get_report(request: Request, report_id: str) -> Response:
    queue = _queue(request)
    doc = await _store(queue, queue.store.get, report_id)
    if doc is None or doc.get("kind") != KIND:
        raise ReportNotFound(f"No report {report_id[:64]!r}: it was never kept, or it expired.")
    return _html(str(doc["html"]))


@router.get(
    "/jobs/{job_id}/report",
    summary="An HTML report of a finished video job",
    description=REPORT_EXPLAINED.replace("the image with", "the most-fake frames with")
    + " Exists while the job is kept (its TTL).",
    response_class=Response,
    responses={**HTML, 404: {**PROBLEM, "description": "Unknown, expired or unfinished job"}},
)
async def get_job_report(request: Request, job_id: str) -> Response:
    queue = _queue(request)
    doc = await _store(queue, queue.store.get, job_id)
    if doc is None or doc.get("kind", "video") != "video":
        raise ReportNotFound(f"No job {job_id[:64]!r}: it never existed, was deleted, or its result expired.")
    if doc.get("state") != "done" or not doc.get("result"):
        raise ReportNotFound(f"Job {job_id[:64]!r} is {doc.get('state')}: a report exists once it is done.")
    frames: dict[int, np.ndarray] = {}
    for top in doc["result"].get("top_frames", []):
        data = await _store(queue, queue.store.get_blob, job_id, frame_blob(int(top["index"])))
        if data is not None:
            frames[int(top["index"])] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    page = await run_in_threadpool(report.video_report, doc, frames, request.app.state.model.card)
    return _html(page)
