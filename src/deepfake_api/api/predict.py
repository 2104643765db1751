"""POST /predict: one image in, a calibrated verdict out (the judging is services/images.py)."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deepfake_api.api import access
from deepfake_api.api.budget import reserve
from deepfake_api.api.deps import ImagesDep
from deepfake_api.api.problems import request_id_of
from deepfake_api.api.reports import keep_image_report
from deepfake_api.api.responses import PROBLEM, UPLOAD_BODY, json_response
from deepfake_api.api.upload import read_upload
from deepfake_api.config import Settings
from deepfake_api.faces import MIN_FACE_SIDE
from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.schemas import Prediction

router = APIRouter(dependencies=[Depends(access.images)], tags=["predict"])

EXPLAIN = "Also a heatmap per judged face: where the evidence lies (costs a little more per face)"
UNKNOWN_QUERY = (
    " Query parameters other than the ones listed are refused (422 `validation-error`, "
    "the unknown name in `errors`), so that a misspelt option is never silently ignored."
)


class QueryOptions(BaseModel):
    """The query options of an image route. One it does not know (`explian=true`, `Explain=true`) is a
    422 validation-error naming it: ignored, it would give a plain answer to a client that asked for
    more, with nothing to say why."""

    model_config = ConfigDict(extra="forbid")


class PredictOptions(QueryOptions):
    explain: bool = Field(False, description=EXPLAIN)
    report: bool = Field(False, description="Keep an HTML report of this analysis (GET `report.url`, for a while)")


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
        "face could be judged. With `explain=true` each judged face also gets a `heatmap` (where the evidence "
        "lies); with `report=true` an HTML report of the analysis is kept for a while (`report.url`)." + UNKNOWN_QUERY
    ),
    openapi_extra=UPLOAD_BODY,
    responses={
        400: {**PROBLEM, "description": "Not a single file in the field `file`"},
        401: {**PROBLEM, "description": "API key missing or wrong (when one is configured)"},
        408: {**PROBLEM, "description": "The upload did not arrive within `upload_timeout_s`"},
        413: {**PROBLEM, "description": "Upload or image too large"},
        431: {**PROBLEM, "description": "Request headers too large"},
        415: {**PROBLEM, "description": "Not an accepted image type"},
        422: {**PROBLEM, "description": "Corrupt, truncated or too small image; an unknown or invalid query parameter"},
        429: {**PROBLEM, "description": "Rate limit reached (when one is configured)"},
        503: {**PROBLEM, "description": "Not ready, at capacity or past the deadline; see Retry-After"},
    },
)
async def predict(
    request: Request,
    images: ImagesDep,
    options: Annotated[PredictOptions, Query()],
) -> Response:
    explain, report = options.explain, options.report
    started = time.perf_counter()
    settings = request.app.state.settings
    async with reserve_body(request, settings.max_upload_bytes):  # until the verdict is in
        upload = await read_upload(request, settings.max_upload_bytes, settings.upload_timeout_s)
        image_bytes = len(upload.data)
        prediction = await images.assess(
            upload.data, started=started, request_id=request_id_of(request), explain=explain
        )
        if report:
            prediction = await keep_image_report(request, upload.data, prediction)
        del upload  # the body is released with its reservation
    request.state.log_extra = {
        "image_bytes": image_bytes,
        "image_format": prediction.image.format,
        "label": prediction.label,
        "faces": len(prediction.faces),
    }
    return json_response(prediction)


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
