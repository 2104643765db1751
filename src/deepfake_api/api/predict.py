"""POST /predict: one image in, a calibrated verdict out; the judging and response pieces the batch
and URL routes (api/batch.py) share."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from deepfake_api.alerts.events import notify_image
from deepfake_api.api.budget import reserve
from deepfake_api.api.deps import authorize
from deepfake_api.api.problems import request_id_of
from deepfake_api.api.upload import read_upload
from deepfake_api.config import Settings
from deepfake_api.engine import FaceVerdict, Verdict
from deepfake_api.errors import DeadlineExceeded
from deepfake_api.faces import MIN_FACE_SIDE, ImageFaces
from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.schemas import (
    Box,
    DetectorInfo,
    DetectorScore,
    FaceResult,
    ImageInfo,
    ModelInfo,
    Prediction,
    Problem,
)

router = APIRouter(tags=["predict"])

PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
UPLOAD_BODY: dict[str, Any] = {
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
    openapi_extra=UPLOAD_BODY,
    responses={
        400: {**PROBLEM, "description": "Not a single file in the field `file`"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**PROBLEM, "description": "Upload or image too large"},
        431: {**PROBLEM, "description": "Request headers too large"},
        415: {**PROBLEM, "description": "Not an accepted image type"},
        422: {**PROBLEM, "description": "Corrupt, truncated or too small image"},
        429: {**PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**PROBLEM, "description": "Not ready, at capacity or past the deadline; see Retry-After"},
    },
)
async def predict(request: Request) -> Response:
    started = time.perf_counter()
    state = request.app.state
    settings = state.settings
    authorize(request, settings)
    async with reserve_body(request, settings.max_upload_bytes):  # until the verdict is in
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
    return json_response(prediction_of(request, verdict, started))


def reserve_body(request: Request, max_bytes: int) -> AbstractAsyncContextManager[None]:
    """This request's share of the body budget (api/budget.py), with the served settings."""
    settings = request.app.state.settings
    return reserve(
        request,
        request.app.state.body_budget,
        max_bytes=max_bytes,
        timeout_s=settings.upload_timeout_s,
        retry_after_s=settings.retry_after_s,
    )


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


def prediction_of(request: Request, verdict: Verdict, started: float) -> Prediction:
    model = request.app.state.model
    decision = model.decision
    assert decision is not None
    detectors = model.detector_info()
    prediction = Prediction(
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
    notify_image(request.app, prediction)
    return prediction


def json_response(model: BaseModel) -> Response:
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
