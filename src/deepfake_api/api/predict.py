"""POST /predict (one image), /predict/batch (several files) and /predict/url (images by URL)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractContextManager
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from deepfake_api.api.budget import reserve
from deepfake_api.api.deps import authorize
from deepfake_api.api.problems import problem_body, request_id_of
from deepfake_api.api.upload import FileSlot, read_upload, read_uploads
from deepfake_api.config import Settings
from deepfake_api.engine import FaceVerdict, Verdict
from deepfake_api.errors import DeadlineExceeded, DeepfakeError, InvalidUpload, ModelNotReady, UploadBudgetFull
from deepfake_api.faces import MIN_FACE_SIDE, ImageFaces
from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.schemas import (
    BatchResult,
    Box,
    DetectorInfo,
    DetectorScore,
    FaceResult,
    ImageInfo,
    ModelInfo,
    Prediction,
    Problem,
    SlotResult,
    UrlRequest,
    UrlsRequest,
)

router = APIRouter(tags=["predict"])

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
_UPLOAD_BODY: dict[str, Any] = {
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
                            "description": "One image: " + ", ".join(MEDIA_TYPES.values()),
                        }
                    },
                },
                # The accepted types, so clients and schema-driven tests know a `file` is an image.
                "encoding": {"file": {"contentType": ", ".join(MEDIA_TYPES.values())}},
            }
        },
    }
}


def _batch_body() -> dict[str, Any]:
    body: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {}}}}
    single = _UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]
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
    "/predict",
    response_model=Prediction,
    summary="Judge every face in one image: real, fake, uncertain or no_face",
    description=(
        "Upload one image as multipart/form-data in the field `file`. The type is detected from the "
        "bytes (JPEG, PNG, WebP, BMP, GIF first frame, TIFF). Every face is found and listed in `faces` "
        "(box and landmarks in the pixels of the image after EXIF orientation); up to `max_faces` of them "
        "are judged. `score` is the calibrated probability that the most-fake judged face is fake, and "
        "`label` its verdict (`uncertain` inside the model card's band); `no_face` (score null) when no "
        "face could be judged."
    ),
    openapi_extra=_UPLOAD_BODY,
    responses={
        400: {**_PROBLEM, "description": "Not a single file in the field `file`"},
        401: {**_PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**_PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**_PROBLEM, "description": "Upload or image too large"},
        431: {**_PROBLEM, "description": "Request headers too large"},
        415: {**_PROBLEM, "description": "Not an accepted image type"},
        422: {**_PROBLEM, "description": "Corrupt, truncated or too small image"},
        429: {**_PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**_PROBLEM, "description": "Not ready, at capacity or past the deadline; see Retry-After"},
    },
)
async def predict(request: Request) -> Response:
    started = time.perf_counter()
    state = request.app.state
    settings = state.settings
    authorize(request, settings)
    held = await _reserve(request, settings.max_upload_bytes)
    with held:  # the body's bytes count against the budget until the verdict is in
        upload = await read_upload(request, settings.max_upload_bytes, settings.upload_timeout_s)
        verdict = await judge(request, upload.data)
        image_bytes = len(upload.data)
        del upload  # the body is released with its reservation
    request.state.log_extra = {
        "image_bytes": image_bytes,
        "image_format": verdict.image.format,
        "label": verdict.label,
        "faces": len(verdict.faces),
    }
    return _json(prediction_of(request, verdict, started))


@router.post(
    "/predict/batch",
    response_model=BatchResult,
    summary="Judge several images in one request: one result per file, in order",
    description=(
        "Upload up to `max_batch_files` images as multipart/form-data, each in a field named `file`. "
        "Each slot of `results` holds that file's prediction, or the problem that file had (too large, "
        "corrupt, not an image, …): one bad file does not fail the others. The request as a whole is "
        "refused (4xx) only when it is itself bad (no file, too many, over `max_batch_bytes`). The faces "
        "of all files share the model's batches, so this is cheaper per image than one call each."
    ),
    openapi_extra=_batch_body(),
    responses={
        400: {**_PROBLEM, "description": "No file, or more than `max_batch_files`"},
        401: {**_PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**_PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**_PROBLEM, "description": "The request is over `max_batch_bytes`"},
        415: {**_PROBLEM, "description": "Not multipart/form-data"},
        429: {**_PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**_PROBLEM, "description": "Not ready or at capacity; see Retry-After"},
    },
)
async def predict_batch(request: Request) -> Response:
    started = time.perf_counter()
    settings = request.app.state.settings
    authorize(request, settings)
    ready(request)
    with await _reserve(request, settings.max_batch_bytes):
        slots = await read_uploads(
            request,
            max_bytes=settings.max_batch_bytes,
            per_file=settings.max_upload_bytes,
            max_files=settings.max_batch_files,
            timeout_s=settings.upload_timeout_s,
        )
        results = await asyncio.gather(*(_slot_result(request, i, slot, started) for i, slot in enumerate(slots)))
    request.state.log_extra = {"files": len(slots), "failed": sum(r.problem is not None for r in results)}
    return _json(BatchResult(results=list(results), request_id=request_id_of(request)))


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
        "response; with `urls`, each slot holds its own prediction or problem."
    ),
    responses={
        400: {**_PROBLEM, "description": "Neither or both of `url` and `urls`, or too many"},
        401: {**_PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        403: {**_PROBLEM, "description": "The URL points at an address or host this service does not fetch"},
        413: {**_PROBLEM, "description": "The image at the URL is too large"},
        415: {**_PROBLEM, "description": "The URL does not hold an accepted image"},
        422: {**_PROBLEM, "description": "Invalid URL, unreachable, timed out, or a corrupt image"},
        429: {**_PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**_PROBLEM, "description": "Not ready or at capacity; see Retry-After"},
    },
)
async def predict_url(request: Request, body: UrlRequest | UrlsRequest) -> Response:
    started = time.perf_counter()
    settings = request.app.state.settings
    authorize(request, settings)
    ready(request)
    if isinstance(body, UrlRequest):
        verdict = await _judge_url(request, body.url)
        request.state.log_extra = {"label": verdict.label, "faces": len(verdict.faces), "by_url": 1}
        return _json(prediction_of(request, verdict, started))
    if len(body.urls) > settings.max_batch_files:
        raise InvalidUpload(f"Send at most {settings.max_batch_files} URLs in one request; got {len(body.urls)}.")

    async def one(i: int, url: str) -> SlotResult:
        try:
            return SlotResult(
                index=i, url=url, status=200, prediction=prediction_of(request, await _judge_url(request, url), started)
            )
        except DeepfakeError as exc:
            return SlotResult(index=i, url=url, status=exc.status, problem=problem_body(request, exc))

    results = await asyncio.gather(*(one(i, u) for i, u in enumerate(body.urls)))
    request.state.log_extra = {"by_url": len(results), "failed": sum(r.problem is not None for r in results)}
    return _json(BatchResult(results=list(results), request_id=request_id_of(request)))


async def _judge_url(request: Request, url: str) -> Verdict:
    """Fetch (its bytes held against the body budget like an upload's) and judge one image."""
    state = request.app.state
    need = state.settings.max_upload_bytes
    if not state.body_budget.try_reserve(need):
        raise UploadBudgetFull(
            "Images in progress hold this worker's body budget; retry shortly.", headers=_retry(request)
        )
    try:
        fetched = await state.fetcher.fetch(url)
        return await judge(request, fetched.data)
    finally:
        state.body_budget.release(need)


async def _reserve(request: Request, max_bytes: int) -> AbstractContextManager[None]:
    settings = request.app.state.settings
    return await reserve(
        request,
        request.app.state.body_budget,
        max_bytes=max_bytes,
        timeout_s=settings.upload_timeout_s,
        retry_after_s=settings.retry_after_s,
    )


def ready(request: Request) -> None:
    """Not ready is 503 before a batch or a fetch starts, not once per slot."""
    engine = request.app.state.engine
    if not engine.running or request.app.state.model.decision is None:
        raise ModelNotReady("The model is still loading; retry shortly.", headers=_retry(request))


def _retry(request: Request) -> dict[str, str]:
    return {"Retry-After": str(request.app.state.settings.retry_after_s)}


async def judge(request: Request, data: bytes | bytearray) -> Verdict:
    """One image through the engine, within the request deadline."""
    settings = request.app.state.settings
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            return await request.app.state.engine.predict(data)
    except TimeoutError:
        raise DeadlineExceeded(
            f"No verdict within {settings.request_timeout_s:g} s; retry later.", headers=_retry(request)
        ) from None


async def _slot_result(request: Request, index: int, slot: FileSlot, started: float) -> SlotResult:
    try:
        if slot.error is not None:
            raise slot.error
        assert slot.upload is not None
        verdict = await judge(request, slot.upload.data)
        prediction = prediction_of(request, verdict, started)
        return SlotResult(index=index, filename=slot.filename, status=200, prediction=prediction)
    except DeepfakeError as exc:
        return SlotResult(index=index, filename=slot.filename, status=exc.status, problem=problem_body(request, exc))
    finally:
        slot.upload = None  # each file's bytes go as soon as it is judged


def prediction_of(request: Request, verdict: Verdict, started: float) -> Prediction:
    model = request.app.state.model
    decision = model.decision
    assert decision is not None
    detectors = model.detector_info()
    return Prediction(
        label=verdict.label,
        score=verdict.score,
        threshold=decision.threshold,
        uncertain_band=(decision.band_low, decision.band_high),
        model=ModelInfo(name=model.name, version=model.version, sha256=model.sha256),
        detectors=[DetectorInfo(**d) for d in detectors],
        image=image_info(verdict.image),
        faces=[face_result(f, detectors) for f in verdict.faces],
        processing_time_ms=round((time.perf_counter() - started) * 1000, 2),
        request_id=request_id_of(request),
        warnings=verdict.image.warnings,
    )


def _json(model: BaseModel) -> Response:
    # Already validated on construction: serialize once, skipping FastAPI's second validation
    # against response_model (which still documents the schema).
    return Response(model.model_dump_json(), media_type="application/json")


def document_limits(schema: dict[str, Any], settings: Settings) -> None:
    """Put the served limits into the /predict upload schema, so that schema-driven clients and
    generators know what a valid image is: its bytes (maxLength), sides and pixels (x-image)."""
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    file = body["schema"]["properties"]["file"]
    file["maxLength"] = settings.max_upload_bytes
    file["x-image"] = {
        "media_types": list(MEDIA_TYPES.values()),
        "min_side": settings.min_side,
        "max_pixels": settings.max_pixels,
        "face_min_side": MIN_FACE_SIDE,
    }
    file["description"] = (
        f"One image ({', '.join(MEDIA_TYPES.values())}) of at least {settings.min_side}×{settings.min_side} "
        f"pixels and at most {settings.max_pixels:,} pixels, up to {settings.max_upload_bytes:,} bytes. "
        f"Faces smaller than {MIN_FACE_SIDE} px are found but not judged."
    )


def image_info(image: ImageFaces) -> ImageInfo:
    return ImageInfo(
        width=image.width,
        height=image.height,
        format=image.format,
        oriented_width=image.oriented_width,
        oriented_height=image.oriented_height,
    )


def face_result(f: FaceVerdict, detectors: list[dict[str, str]]) -> FaceResult:
    face = f.candidate.face
    x, y, w, h = face.box
    return FaceResult(
        status=f.candidate.status,  # type: ignore[arg-type]
        box=Box(x=x, y=y, width=w, height=h),
        landmarks=list(face.landmarks),
        detection_score=min(1.0, face.score),
        label=f.label,
        score=f.score,
        detectors=[DetectorScore(**d, score=f.detectors[d["name"]]) for d in detectors if d["name"] in f.detectors],
    )
