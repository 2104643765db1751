"""POST /videos: upload a clip, get a job; GET/DELETE /jobs/{id}; the job's evidence frames.

The upload streams to a private spool file (never into memory) and is checked from its header
before it is queued: type from the bytes, a video stream, frame size, duration. Each of those is
a 4xx here, not a failed job. The job then waits for a worker (jobs/), which deletes the video
once analysed. `?wait=S` holds the request up to S seconds (at most video_max_wait_s) and answers
200 with the finished job, so a short clip needs one curl call; otherwise 202 + Location.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Query, Request, Response

from deepfake_api import video
from deepfake_api.api import access
from deepfake_api.api.deps import JobsDep
from deepfake_api.api.problems import request_id_of
from deepfake_api.api.responses import PROBLEM, json_response, upload_body
from deepfake_api.api.upload import read_upload_to_file
from deepfake_api.jobs.store import Doc
from deepfake_api.schemas import Job
from deepfake_api.services.jobs import is_active, is_final

router = APIRouter(dependencies=[Depends(access.jobs)], tags=["videos"])

VIDEO_BODY = upload_body("One video", video.VIDEO_TYPES.values())


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
    headers = {"Location": f"/jobs/{doc['id']}"}
    if is_active(doc):
        headers["Retry-After"] = "1"  # a polite polling interval
    return json_response(job_view(doc), status, headers)


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
        "face is judged as in `/predict`, faces are linked into tracks, and the video is `fake` when any track is. "
        "With `explain=true` every judged face of the kept top frames (`top_frames[].faces`) also gets a "
        "`heatmap` as in `/predict` (only those frames are scored again; without it nothing changes)."
    ),
    openapi_extra=VIDEO_BODY,
    responses={
        200: {"model": Job, "description": "Finished within `wait`"},
        400: {**PROBLEM, "description": "Not a single file in the field `file`"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**PROBLEM, "description": "Upload too large, frames too large, or video too long"},
        415: {**PROBLEM, "description": "Not an accepted video type"},
        422: {
            **PROBLEM,
            "description": "Corrupt or truncated video, no video stream, frames too small; an invalid query parameter",
        },
        429: {**PROBLEM, "description": "Rate limit, or too many of this client's videos waiting"},
        503: {**PROBLEM, "description": "Queue full, queue unreachable or not ready; see Retry-After"},
    },
)
async def submit_video(
    request: Request,
    jobs: JobsDep,
    wait: float = Query(0, ge=0, le=3600, description="Seconds to wait for the result (capped by video_max_wait_s)"),
    explain: bool = Query(False, description="Also a heatmap per judged face of the top frames (`top_frames[].faces`)"),
) -> Response:
    settings = request.app.state.settings

    async def receive(sink: BinaryIO) -> tuple[str, int]:
        return await read_upload_to_file(request, sink, settings.video_max_bytes, max(settings.upload_timeout_s, 300.0))

    doc = await jobs.submit_video(access.client_address(request), request_id_of(request), receive, explain=explain)
    request.state.log_extra = {"job_id": doc["id"], "video_bytes": doc["upload"]["bytes"]}
    doc = await jobs.wait(doc, wait)
    return _job_response(doc, 200 if is_final(doc) else 202)


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    summary="A job's state, progress and, when done, its result",
    responses=JOB_RESPONSES,
)
async def get_job(job_id: str, jobs: JobsDep) -> Response:
    return _job_response(await jobs.get(job_id), 200)


@router.delete(
    "/jobs/{job_id}",
    response_model=Job,
    status_code=202,
    summary="Cancel a queued or running job (202), or delete a finished one and its result (204)",
    responses={204: {"description": "Deleted"}, **JOB_RESPONSES},
)
async def delete_job(job_id: str, jobs: JobsDep) -> Response:
    doc = await jobs.cancel_or_delete(job_id)
    return Response(status_code=204) if doc is None else _job_response(doc, 202)


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
async def get_frame(job_id: str, index: int, jobs: JobsDep) -> Response:
    data = await jobs.frame(job_id, index)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
