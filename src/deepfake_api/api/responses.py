"""Response pieces every router shares: the problem response documentation, the upload body's
OpenAPI description, and one-pass JSON responses."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.schemas import Problem

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


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Already validated on construction: serialize once, skipping FastAPI's second validation
    # against response_model (which still documents the schema).
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")
