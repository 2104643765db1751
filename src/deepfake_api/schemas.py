"""Response schemas (versioned). New fields are only ever added, never renamed or removed:
per-face results will arrive as an optional `faces` list and a batch endpoint will return
`{"results": [Prediction, ...]}`, so clients written against schema 1 keep working."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"


class ModelInfo(BaseModel):
    name: str = Field(examples=["deepfake-cnn"])
    version: str = Field(examples=["1.0.0"])
    sha256: str = Field(description="SHA-256 of the served model file", examples=["3f5a…"])


class ImageInfo(BaseModel):
    width: int = Field(description="Width in pixels as uploaded", examples=[600])
    height: int = Field(description="Height in pixels as uploaded", examples=[600])
    format: str = Field(description="Detected from the file's bytes", examples=["JPEG"])


class Prediction(BaseModel):
    """The verdict for one uploaded image."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    label: Literal["real", "fake", "uncertain"] = Field(
        description="`uncertain` when the score lies inside the model card's uncertain band",
        examples=["fake"],
    )
    score: float = Field(ge=0, le=1, description="Calibrated probability that the image is fake", examples=[0.93])
    threshold: float = Field(ge=0, le=1, description="Decision threshold on `score`", examples=[0.5])
    uncertain_band: tuple[float, float] = Field(
        description="Scores inside [low, high] are labelled `uncertain`", examples=[[0.3, 0.7]]
    )
    model: ModelInfo
    image: ImageInfo
    processing_time_ms: float = Field(ge=0, examples=[7.4])
    request_id: str = Field(examples=["6f1c2e0d9a4b4f0f8a3e2b1c0d9e8f7a"])
    warnings: list[str] = Field(default_factory=list, examples=[[]])


class HealthModel(BaseModel):
    name: str
    version: str


class Health(BaseModel):
    status: Literal["ok", "starting", "failed"] = Field(
        description="`failed` when the model could not be loaded (the process should be restarted)", examples=["ok"]
    )
    ready: bool
    model: HealthModel | None = None
    replica: str = Field(description="Host name of the serving replica", examples=["api-1"])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["https://deepfake-api.example/problems/unsupported-media-type"])
    title: str = Field(examples=["Unsupported image type"])
    status: int = Field(examples=[415])
    detail: str = Field(examples=["The file is not an accepted image type (image/jpeg, image/png, …)."])
    instance: str = Field(examples=["/predict"])
    request_id: str = Field(examples=["6f1c2e0d9a4b4f0f8a3e2b1c0d9e8f7a"])
    errors: list[dict[str, object]] | None = None
