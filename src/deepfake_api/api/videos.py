"""POST /videos: upload a clip, get a job; GET/DELETE /jobs/{id}; the job's evidence frames.

The upload streams to a private spool file (never into memory) and is checked from its header
before it is queued: type from the bytes, a video stream, frame size, duration. Each of those is
a 4xx here, not a failed job. The job then waits for a worker (jobs/), which deletes the video
once analysed. `?wait=S` holds the request up to S seconds (at most video_max_wait_s) and answers
200 with the finished job, so a short clip needs one curl call; otherwise 202 + Location.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from deepfake_api import video
from deepfake_api.api import access
from deepfake_api.api.deps import in_store, job_queue
from deepfake_api.api.problems import request_id_of
from deepfake_api.api.responses import PROBLEM, json_response
from deepfake_api.api.upload import read_upload_to_file
from deepfake_api.errors import JobNotFound, QueueFull, QueueUnavailable, TooManyJobs
from deepfake_api.jobs.queue import JobQueue, failed, now
from deepfake_api.jobs.store import ACTIVE, FINAL, Doc, spool_file
from deepfake_api.jobs.video_job import frame_blob, limits_of
from deepfake_api.schemas import Job

router = APIRouter(dependencies=[Depends(access.jobs)], tags=["videos"])
POLL_S = 0.25

VIDEO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "One video: " + ", ".join(video.VIDEO_TYPES.values()),
                        }
                    },
                },
                "encoding": {"file": {"contentType": ", ".join(video.VIDEO_TYPES.values())}},
            }
        },
    }
}


JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {**PROBLEM, "description": "Unknown, deleted or expired job"},
    422: {**PROBLEM, "description": "The job id is not valid"},
}


def job_view(doc: Doc) -> Job:
    links = {"self": f"/jobs/{doc['id']}"}
    return Job.model_validate(
        {
            **{k: doc.get(k) for k in Job.model_fields if k in doc and k != "links"},
            "filename": doc.get("upload", {}).get("filename"),
            "size_bytes": doc.get("upload", {}).get("bytes"),
            "links": links,
        }
    )


def _job_response(doc: Doc, status: int) -> Response:
    response = json_response(job_view(doc))
    response.status_code = status
    response.headers["Location"] = f"/jobs/{doc['id']}"
    if doc["state"] in ACTIVE:
        response.headers["Retry-After"] = "1"  # a polite polling interval
    return response


@router.post(
    "/videos",
    status_code=202,
    response_model=Job,
    summary="Upload a video: every face judged over time, as a job",
    description=(
        "Upload one video (mp4, mov, webm, mkv, avi; the type is read from the bytes) as multipart/form-data "
        "in the field `file`. Answered `202 Accepted` with the job and its `Location`; poll `GET /jobs/{id}`. "
        "With `wait` (seconds) the request waits that long for the result and answers 200 with the finished "
        "job if it is done by then. Frames are sampled (`video_sample_fps`, at most `video_max_frames`), every "
        "face is judged as in `/predict`, faces are linked into tracks, and the video is `fake` when any track is."
    ),
    openapi_extra=VIDEO_BODY,
    responses={
        200: {"model": Job, "description": "Finished within `wait`"},
        400: {**PROBLEM, "description": "Not a single file in the field `file`"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**PROBLEM, "description": "Upload too large, frames too large, or video too long"},
        415: {**PROBLEM, "description": "Not an accepted video type"},
        422: {**PROBLEM, "description": "Corrupt or truncated video, no video stream, frames too small"},
        429: {**PROBLEM, "description": "Rate limit, or too many of this client's videos waiting"},
        503: {**PROBLEM, "description": "Queue full, queue unreachable or not ready; see Retry-After"},
    },
)
async def submit_video(
    request: Request,
    wait: float = Query(0, ge=0, le=3600, description="Seconds to wait for the result (capped by video_max_wait_s)"),
) -> Response:
    settings = request.app.state.settings
    queue = job_queue(request)
    client = access.client_address(request)
    await in_store(queue, _admit, queue, client)
    fd, part = spool_file(queue.spool)
    try:
        with os.fdopen(fd, "wb") as sink:
            filename, size = await read_upload_to_file(
                request, sink, settings.video_max_bytes, max(settings.upload_timeout_s, 300.0)
            )
        doc = await in_store(queue, _check_and_queue, queue, part, filename, size, client, request_id_of(request))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise QueueFull(
            "There is no room to store the video now; retry later.",
            headers={"Retry-After": str(settings.jobs_retry_after_s)},
        ) from None
    finally:
        part.unlink(missing_ok=True)  # moved into the job's file, or refused
    request.state.log_extra = {"job_id": doc["id"], "video_bytes": size}
    deadline = time.monotonic() + min(wait, settings.video_max_wait_s)
    while doc["state"] in ACTIVE and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        doc = await in_store(queue, queue.store.get, doc["id"]) or doc
    return _job_response(doc, 200 if doc["state"] in FINAL else 202)


def _admit(queue: JobQueue, client: str) -> None:
    settings = queue.settings
    active = queue.store.active()
    retry = {"Retry-After": str(settings.jobs_retry_after_s)}
    if len(active) >= settings.jobs_max_active:
        raise QueueFull(
            f"{len(active)} videos are queued or running, the limit is {settings.jobs_max_active}.", headers=retry
        )
    mine = sum(1 for d in active if d.get("client") == client)
    if mine >= settings.jobs_max_per_client:
        raise TooManyJobs(
            f"{mine} of your videos are queued or running, the limit is {settings.jobs_max_per_client}.", headers=retry
        )


def _check_and_queue(queue: JobQueue, part: Path, filename: str, size: int, client: str, request_id: str) -> Doc:
    """Refuse a bad video from its header (4xx), else store it and queue its job."""
    info = video.probe(part, limits_of(queue.settings))
    doc = queue.new_job(
        "video",
        client,
        request_id=request_id,
        upload={"filename": filename[:255], "bytes": size, "container": info.container},
        video=info.as_dict(),
    )
    queue.store.put_file(doc["id"], part)
    queue.store.create(doc)
    try:
        queue.enqueue(doc["id"])
    except QueueUnavailable as exc:
        error = exc
        queue.store.modify(doc["id"], lambda d: failed(d, error, queue.settings.jobs_result_ttl_s))
        queue.store.drop_file(doc["id"])
        raise
    return doc


async def _doc(request: Request, job_id: str) -> Doc:
    queue = job_queue(request)
    doc = await in_store(queue, queue.store.get, job_id)
    if doc is None:
        raise JobNotFound(f"No job {job_id[:64]!r}: it never existed, was deleted, or its result expired.")
    return doc


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    summary="A job's state, progress and, when done, its result",
    responses=JOB_RESPONSES,
)
async def get_job(request: Request, job_id: str) -> Response:
    doc = await _doc(request, job_id)
    return _job_response(doc, 200)


@router.delete(
    "/jobs/{job_id}",
    response_model=Job,
    status_code=202,
    summary="Cancel a queued or running job (202), or delete a finished one and its result (204)",
    responses={204: {"description": "Deleted"}, **JOB_RESPONSES},
)
async def delete_job(request: Request, job_id: str) -> Response:
    queue = job_queue(request)
    doc = await _doc(request, job_id)
    if doc["state"] in FINAL:
        await in_store(queue, queue.store.delete, job_id)
        return Response(status_code=204)
    ttl = queue.settings.jobs_result_ttl_s

    def cancel(d: Doc) -> Doc | None:
        if d["state"] == "queued":  # no worker has it: cancelled now (a later message finds it so)
            t = now()
            d.update(state="cancelled", finished_at=t, updated_at=t, expires_at=t + ttl)
            return d
        if d["state"] == "running":  # its worker stops at the next frame
            d.update(cancel_requested=True, updated_at=now())
            return d
        return None

    new = await in_store(queue, queue.store.modify, job_id, cancel)
    if new is None:
        raise JobNotFound(f"No job {job_id[:64]!r}.")
    if new["state"] == "cancelled":
        await in_store(queue, queue.store.drop_file, job_id)
    return _job_response(new, 202)


@router.get(
    "/jobs/{job_id}/frames/{index}",
    summary="One of a finished job's most-fake frames (JPEG)",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The frame, at most 480 px"},
        404: {**PROBLEM, "description": "No such job or frame"},
        422: {**PROBLEM, "description": "The frame index is not an integer"},
    },
)
async def get_frame(request: Request, job_id: str, index: int) -> Response:
    queue = job_queue(request)
    data = await in_store(queue, queue.store.get_blob, job_id, frame_blob(index))
    if data is None:
        raise JobNotFound(f"Job {job_id[:64]!r} has no kept frame {index}.")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
