"""POST /predict/batch (several files, one outcome per slot) and /predict/url (images by URL)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from deepfake_api.api import access
from deepfake_api.api.deps import ImagesDep
from deepfake_api.api.predict import EXPLAIN, UNKNOWN_QUERY, QueryOptions, reserve_body
from deepfake_api.api.problems import problem_body, request_id_of
from deepfake_api.api.reports import keep_image_report
from deepfake_api.api.responses import PROBLEM, UPLOAD_BODY, json_response
from deepfake_api.api.upload import FileSlot, read_uploads
from deepfake_api.errors import DeepfakeError, InvalidUpload
from deepfake_api.schemas import BatchResult, Prediction, SlotResult, UrlRequest, UrlsRequest
from deepfake_api.services.images import ImageService

router = APIRouter(dependencies=[Depends(access.images)], tags=["predict"])


class BatchOptions(QueryOptions):
    explain: bool = Field(False, description=EXPLAIN)


class UrlOptions(QueryOptions):
    explain: bool = Field(False, description=EXPLAIN)
    report: bool = Field(False, description="With one `url`: keep an HTML report of this analysis (`report.url`)")


def _batch_body() -> dict[str, Any]:
    body: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {}}}}
    single = UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]
    body["requestBody"]["content"]["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "array",
                    "minItems": 1,
                    "items": single["schema"]["properties"]["file"],
                    "description": "One or more images, each in a part named `file`",
                }
            },
        },
        "encoding": single["encoding"],
    }
    return body


@router.post(
    "/predict/batch",
    response_model=BatchResult,
    summary="Judge several images in one request: one result per file, in order",
    description=(
        "Upload up to `max_batch_files` images as multipart/form-data, each in a field named `file`. "
        "Each slot of `results` holds that file's prediction, or the problem that file had (too large, "
        "corrupt, not an image, …): one bad file does not fail the others. The request as a whole is "
        "refused (4xx) only when it is itself bad (no file, too many, over `max_batch_bytes`). The faces "
        "of all files share the model's batches, so this is cheaper per image than one call each." + UNKNOWN_QUERY
    ),
    openapi_extra=_batch_body(),
    responses={
        400: {**PROBLEM, "description": "No file, or more than `max_batch_files`"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**PROBLEM, "description": "The request is over `max_batch_bytes`"},
        415: {**PROBLEM, "description": "Not multipart/form-data"},
        422: {**PROBLEM, "description": "An unknown or invalid query parameter"},
        429: {**PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**PROBLEM, "description": "Not ready or at capacity; see Retry-After"},
    },
)
async def predict_batch(
    request: Request,
    images: ImagesDep,
    options: Annotated[BatchOptions, Query()],
) -> Response:
    explain = options.explain
    started = time.perf_counter()
    settings = request.app.state.settings
    request.app.state.engine.ensure_ready()
    async with reserve_body(request, settings.max_batch_bytes):
        slots = await read_uploads(
            request,
            max_bytes=settings.max_batch_bytes,
            per_file=settings.max_upload_bytes,
            max_files=settings.max_batch_files,
            timeout_s=settings.upload_timeout_s,
        )
        results = await asyncio.gather(
            *(_slot_result(request, images, i, slot, started, explain) for i, slot in enumerate(slots))
        )
    request.state.log_extra = {"files": len(slots), "failed": sum(r.problem is not None for r in results)}
    return json_response(BatchResult(results=list(results), request_id=request_id_of(request)))


@router.post(
    "/predict/url",
    response_model=Prediction | BatchResult,
    summary="Judge images by URL: one `url` (a prediction), or `urls` (one result per URL)",
    description=(
        "The service fetches each image itself: http/https only, never from private, loopback, "
        "link-local or otherwise non-public addresses (checked for every address the host resolves to, "
        "and again on every redirect, at most `url_max_redirects`), within `url_timeout_s` and "
        "`max_upload_bytes`; the content is checked like an upload. Hosts may be restricted by the "
        "`url_allow_hosts` / `url_deny_hosts` settings. A single `url` that cannot be fetched is a problem "
        "response; with `urls`, each slot holds its own prediction or problem." + UNKNOWN_QUERY
    ),
    responses={
        400: {**PROBLEM, "description": "Neither or both of `url` and `urls`, or too many"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        403: {**PROBLEM, "description": "The URL points at an address or host this service does not fetch"},
        413: {**PROBLEM, "description": "The image at the URL is too large"},
        415: {**PROBLEM, "description": "The URL does not hold an accepted image"},
        422: {
            **PROBLEM,
            "description": (
                "Invalid URL, unreachable, timed out, or a corrupt image; an unknown or invalid query parameter"
            ),
        },
        429: {**PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**PROBLEM, "description": "Not ready or at capacity; see Retry-After"},
    },
)
async def predict_url(
    request: Request,
    images: ImagesDep,
    body: UrlRequest | UrlsRequest,
    options: Annotated[UrlOptions, Query()],
) -> Response:
    explain, report = options.explain, options.report
    started = time.perf_counter()
    settings = request.app.state.settings
    request.app.state.engine.ensure_ready()
    if isinstance(body, UrlRequest):
        prediction = await _assess_url(request, images, body.url, started, explain, keep_report=report)
        request.state.log_extra = {"label": prediction.label, "faces": len(prediction.faces), "by_url": 1}
        return json_response(prediction)
    if report:
        raise InvalidUpload("`report=true` keeps the report of one image: send one `url`, not `urls`.")
    if len(body.urls) > settings.max_batch_files:
        raise InvalidUpload(f"Send at most {settings.max_batch_files} URLs in one request; got {len(body.urls)}.")

    async def one(i: int, url: str) -> SlotResult:
        try:
            prediction = await _assess_url(request, images, url, started, explain)
            return SlotResult(index=i, url=url, status=200, prediction=prediction)
        except DeepfakeError as exc:
            return SlotResult(index=i, url=url, status=exc.status, problem=problem_body(request, exc))

    results = await asyncio.gather(*(one(i, u) for i, u in enumerate(body.urls)))
    request.state.log_extra = {"by_url": len(results), "failed": sum(r.problem is not None for r in results)}
    return json_response(BatchResult(results=list(results), request_id=request_id_of(request)))


async def _assess_url(
    request: Request,
    images: ImageService,
    url: str,
    started: float,
    explain: bool = False,
    *,
    keep_report: bool = False,
) -> Prediction:
    """Fetch (its bytes held against the body budget like an upload's) and judge one image."""
    state = request.app.state
    with state.body_budget.hold(state.settings.max_upload_bytes, state.settings.retry_after_s):
        fetched = await state.fetcher.fetch(url)
        prediction = await images.assess(
            fetched.data, started=started, request_id=request_id_of(request), explain=explain
        )
        if keep_report:
            prediction = await keep_image_report(request, fetched.data, prediction)
        return prediction


async def _slot_result(
    request: Request, images: ImageService, index: int, slot: FileSlot, started: float, explain: bool = False
) -> SlotResult:
    try:
        if slot.error is not None:
            raise slot.error
        assert slot.upload is not None
        prediction = await images.assess(
            slot.upload.data, started=started, request_id=request_id_of(request), explain=explain
        )
        return SlotResult(index=index, filename=slot.filename, status=200, prediction=prediction)
    except DeepfakeError as exc:
        return SlotResult(index=index, filename=slot.filename, status=exc.status, problem=problem_body(request, exc))
    finally:
        slot.upload = None  # each file's bytes go as soon as it is judged
