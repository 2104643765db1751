"""What is stored, typed: the records of jobs, alerts and subscriptions (one document store holds
them all, jobs/store.py), the model card, and the event names (one enum).

Records are validated where they are written: every store write goes through `check_record`, so a
shape bug fails its writer (a 500 on the request or a failed task that wrote it, in the log) and
never reaches a reader. Fields the store does not rely on are allowed (`extra="allow"`): a
result's own shape belongs to its schema (schemas.py), not here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventName(StrEnum):
    """Every event an alert subscription can ask for."""

    IMAGE_FAKE = "image.fake"
    IMAGE_UNCERTAIN = "image.uncertain"
    VIDEO_DONE = "video.done"
    VIDEO_FAKE = "video.fake"
    VIDEO_UNCERTAIN = "video.uncertain"


JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    expires_at: float | None = None


class Progress(BaseModel):
    done: int = Field(ge=0)
    planned: int | None = Field(None, ge=0)


class JobRecord(_Record):
    """A video job: its state machine (services/jobs.py, jobs/queue.py, jobs/video_job.py write it)."""

    kind: Literal["video"]
    state: JobState
    client: str
    created_at: float
    updated_at: float
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = Field(ge=0)
    owner: str | None = None
    heartbeat_at: float | None = None
    cancel_requested: bool = False
    progress: Progress
    result: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None
    request_id: str | None = None
    upload: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    explain: bool = False  # heatmaps for the top frames' faces (POST /videos?explain=true); absent in older records


class SubscriptionRecord(_Record):
    state: Literal["subscription"]
    source: Literal["settings", "api"]
    channel: Literal["webhook", "email"]
    events: list[EventName] = Field(min_length=1)
    min_score: float = Field(ge=0, le=1)
    created_at: float
    url: str | None = None
    secret: str | None = None
    emails: list[str] | None = None


class AlertAttempt(BaseModel):
    n: int = Field(ge=1)
    at: float
    outcome: Literal["delivered", "retry", "failed"]
    status: int | None = None
    error: str | None = None
    seconds: float = Field(ge=0)


class AlertRecord(_Record):
    state: Literal["alert"]
    status: Literal["pending", "delivering", "delivered", "failed"]
    subscription: str
    channel: Literal["webhook", "email"]
    event: EventName
    data: dict[str, Any]
    created_at: float
    next_at: float
    attempts: list[AlertAttempt]


def check_record(doc: dict[str, Any]) -> None:
    """ValidationError unless `doc` is a well-formed job, subscription or alert record (other
    kinds of document in the store are their writers' own)."""
    if doc.get("state") == "subscription":
        SubscriptionRecord.model_validate(doc)
    elif doc.get("state") == "alert":
        AlertRecord.model_validate(doc)
    elif doc.get("kind") == "video":
        JobRecord.model_validate(doc)


class CardDetector(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    kind: str
    file: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    calibration: dict[str, float] | None = None


class CardDecision(BaseModel):
    model_config = ConfigDict(extra="allow")

    threshold: float = Field(ge=0, le=1)
    uncertain_band: tuple[float, float]


class CardFusion(BaseModel):
    model_config = ConfigDict(extra="allow")

    weights: dict[str, float]
    bias: float


class ModelCard(BaseModel):
    """models/model_card.json: what training writes and serving reads (its detectors, their files
    and hashes, the fusion and the decision rule)."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    detectors: list[CardDetector] = Field(min_length=1)
    fusion: CardFusion
    decision: CardDecision


def read_model_card(text: str) -> ModelCard:
    """The card, checked: a missing field or a wrong type is a ValidationError naming it."""
    return ModelCard.model_validate_json(text)
