"""Response pieces every router shares: the problem response documentation, the upload body's
OpenAPI description, and one-pass JSON responses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.schemas import Problem

PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}


def upload_body(what: str, media_types: Iterable[str]) -> dict[str, Any]:
    """The OpenAPI request body of an upload route: one multipart `file` of `what` ("One image"),
    with the accepted types, so clients and schema-driven tests know what a `file` must be."""
    types = ", ".join(media_types)
    file = {"type": "string", "format": "binary", "description": f"{what}: {types}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": file},
                    },
                    "encoding": {"file": {"contentType": types}},
                }
            },
        }
    }


UPLOAD_BODY = upload_body("One image", MEDIA_TYPES.values())


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Already validated on construction: serialize once, skipping FastAPI's second validation
    # against response_model (which still documents the schema).
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")
