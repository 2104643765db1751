"""Response schemas (versioned). Schema "2" (face-aware analysis) changed two things on purpose:
`label` gained `no_face` and `score` is null when no face could be judged (schema 1 scored a
centre crop whatever it held); everything else of schema 1 is kept, and `faces` and `detectors`
were added. Fields are otherwise only ever added, never renamed or removed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from deepfake_api.records import EventName

SCHEMA_VERSION = "2"


class ModelInfo(BaseModel):
    name: str = Field(examples=["deepfake-cnn"])
    version: str = Field(examples=["1.0.0"])
    sha256: str = Field(description="SHA-256 of the served model file", examples=["3f5a…"])


class ImageInfo(BaseModel):
    width: int = Field(description="Width in pixels as uploaded", examples=[600])
    height: int = Field(description="Height in pixels as uploaded", examples=[600])
    format: str = Field(description="Detected from the file's bytes", examples=["JPEG"])
    oriented_width: int = Field(description="Width after EXIF orientation: the frame of face boxes", examples=[600])
    oriented_height: int = Field(description="Height after EXIF orientation", examples=[600])


class DetectorInfo(BaseModel):
    name: str = Field(examples=["clip-vitb16-face-linear"])
    version: str = Field(examples=["2026.12.02"])


class DetectorScore(DetectorInfo):
    score: float = Field(ge=0, le=1, description="This detector's own calibrated P(fake) for the face")


class Box(BaseModel):
    x: float = Field(description="Left edge, pixels of the oriented image", examples=[212.5])
    y: float = Field(description="Top edge", examples=[80.0])
    width: float = Field(examples=[160.0])
    height: float = Field(examples=[198.0])


class Heatmap(BaseModel):
    """Where in the face the evidence is (`explain=true`): a grid over the aligned face crop."""

    grid: list[list[float]] = Field(
        description=(
            "rows x columns (14 x 14, top row first) over the aligned crop: how much each cell pushes the "
            "fused score towards fake, 0 (not at all) to 1 (the face's strongest cell)"
        )
    )
    crop_size: int = Field(
        description="Side of the aligned crop in pixels; each cell is crop_size / 14", examples=[224]
    )
    transform: list[list[float]] = Field(
        description=(
            "2 x 3 affine taking crop pixels (x, y, 1) to the oriented image's pixels (the frame of `box`): "
            "a cell's corners (col, row) x crop_size / 14 map to a quadrilateral in the image"
        )
    )
    max_contribution: float = Field(
        description="The strongest cell's push towards fake in fused-logit units (0 when no cell pushes towards fake)"
    )
    method: str = Field(description="How the grid was computed, and which detectors have no spatial map")


class KindScore(BaseModel):
    name: str = Field(examples=["face_swap"])
    probability: float = Field(ge=0, le=1)


class Kind(BaseModel):
    """What kind of manipulation the face looks like (faces not labelled real, when the model has a kind head)."""

    name: str = Field(
        description="The most likely kind, or `unknown` when none is likely enough", examples=["face_swap"]
    )
    probability: float = Field(ge=0, le=1, description="The most likely kind's probability")
    probabilities: list[KindScore] = Field(description="Every kind the head knows, most likely first")


class Agreement(BaseModel):
    """Whether the detectors agree: `disagree` when one says fake strongly and another real strongly."""

    status: Literal["agree", "disagree"]
    says_fake: list[str] = Field(description="Detectors whose own calibrated score is >= fake_at")
    says_real: list[str] = Field(description="Detectors whose own calibrated score is <= real_at")
    fake_at: float = Field(examples=[0.9])
    real_at: float = Field(examples=[0.1])


class FaceResult(BaseModel):
    """One detected face. `status`: `judged` (scored), `too_small` (below the model's minimum face
    size) or `not_judged` (beyond the per-image cap `max_faces`)."""

    status: Literal["judged", "too_small", "not_judged"]
    box: Box
    landmarks: list[tuple[float, float]] = Field(
        description="Right eye, left eye, nose tip, right and left mouth corner (oriented image pixels)"
    )
    detection_score: float = Field(ge=0, le=1, examples=[0.93])
    label: Literal["real", "fake", "uncertain"] | None = Field(None, description="null unless judged")
    score: float | None = Field(None, ge=0, le=1, description="Fused calibrated P(fake); null unless judged")
    detectors: list[DetectorScore] = Field(default_factory=list, description="Each detector's score (judged faces)")
    agreement: Agreement | None = Field(None, description="Whether the detectors agree (judged faces)")
    kind: Kind | None = Field(None, description="What kind of fake it looks like (judged, not labelled real)")
    heatmap: Heatmap | None = Field(None, description="Where the evidence is (judged faces, with `explain=true`)")


class Prediction(BaseModel):
    """The verdict for one uploaded image."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: Literal["2"] = SCHEMA_VERSION
    label: Literal["real", "fake", "uncertain", "no_face"] = Field(
        description=(
            "The verdict of the most-fake judged face: `uncertain` when its score lies inside the model "
            "card's uncertain band; `no_face` when no face could be judged (none found, or all too small)"
        ),
        examples=["fake"],
    )
    score: float | None = Field(
        ge=0,
        le=1,
        description="Calibrated P(fake) of the most-fake judged face; null for `no_face`",
        examples=[0.93],
    )
    threshold: float = Field(ge=0, le=1, description="Decision threshold on `score`", examples=[0.5])
    uncertain_band: tuple[float, float] = Field(
        description="Scores inside [low, high] are labelled `uncertain`", examples=[[0.3, 0.7]]
    )
    model: ModelInfo
    detectors: list[DetectorInfo] = Field(default_factory=list, description="The detectors the score fuses")
    image: ImageInfo
    faces: list[FaceResult] = Field(default_factory=list, description="Every detected face, most confident first")
    processing_time_ms: float = Field(ge=0, examples=[7.4])
    request_id: str = Field(examples=["6f1c2e0d9a4b4f0f8a3e2b1c0d9e8f7a"])
    warnings: list[str] = Field(default_factory=list, examples=[[]])
    report: ReportLink | None = Field(None, description="The kept HTML report (only with `report=true`)")


class ReportLink(BaseModel):
    id: str
    url: str = Field(examples=["/reports/5b0e7c3f0d5c4a0b9f1e2d3c4b5a6978"])
    expires_at: float = Field(description="Unix time when the report is deleted")


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
    reason: str | None = Field(None, description="Why the model failed to load (when `failed`)")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["https://deepfake-api.example/problems/unsupported-media-type"])
    title: str = Field(examples=["Unsupported image type"])
    status: int = Field(examples=[415])
    detail: str = Field(examples=["The file is not an accepted image type (image/jpeg, image/png, …)."])
    instance: str = Field(examples=["/predict"])
    request_id: str = Field(examples=["6f1c2e0d9a4b4f0f8a3e2b1c0d9e8f7a"])
    errors: list[dict[str, object]] | None = None


class SlotResult(BaseModel):
    """One file (or URL) of a batch: its prediction, or its problem."""

    model_config = ConfigDict(protected_namespaces=())

    index: int = Field(ge=0, description="Position of the file or URL in the request")
    filename: str | None = Field(None, description="The part's filename, for uploads")
    url: str | None = Field(None, description="The URL, for images by URL")
    status: int = Field(description="200, or the status the problem would have had alone", examples=[200])
    prediction: Prediction | None = None
    problem: Problem | None = None


class BatchResult(BaseModel):
    """One result per file or URL, in the order sent."""

    schema_version: Literal["2"] = SCHEMA_VERSION
    results: list[SlotResult]
    request_id: str


class UrlRequest(BaseModel):
    """One image by URL: answered with a prediction."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, pattern=r"^https?://", examples=["https://example.com/face.jpg"])


class UrlsRequest(BaseModel):
    """Several images by URL: answered with one result per URL, in order."""

    model_config = ConfigDict(extra="forbid")

    urls: list[Annotated[str, Field(max_length=2048, pattern=r"^https?://")]] = Field(
        min_length=1, examples=[["https://example.com/a.jpg", "https://example.com/b.jpg"]]
    )


# -- video jobs ---------------------------------------------------------------------------------


class VideoInfo(BaseModel):
    container: Literal["mp4", "mov", "webm", "mkv", "avi"]
    media_type: str = Field(examples=["video/mp4"])
    codec: str = Field(examples=["h264"])
    width: int = Field(description="Frame width as coded", examples=[1280])
    height: int = Field(examples=[720])
    duration_s: float | None = Field(description="From the container header", examples=[12.5])
    fps: float | None = Field(examples=[30.0])
    rotation: int | None = Field(None, description="Degrees the frames were turned to be upright (phone videos)")


class FrameFace(BaseModel):
    track: int = Field(description="The face track this face belongs to")
    status: Literal["judged", "too_small", "not_judged"]
    box: Box = Field(description="In the pixels of the upright frame")
    detection_score: float = Field(ge=0, le=1)
    label: Literal["real", "fake", "uncertain"] | None = None
    score: float | None = Field(None, ge=0, le=1)
    detectors: list[DetectorScore] = Field(default_factory=list)
    agreement: Agreement | None = None
    kind: Kind | None = None
    heatmap: Heatmap | None = Field(None, description="Top frames of a job submitted with `explain=true`")


class FrameResult(BaseModel):
    index: int = Field(ge=0, description="Position among the sampled frames")
    time_s: float = Field(ge=0, description="Presentation time of the frame")
    faces: list[FrameFace]


class Track(BaseModel):
    """One face followed across sampled frames (linked by where it moves, its size and its look)."""

    id: int
    label: Literal["real", "fake", "uncertain"] = Field(description="The card's band applied to `score`")
    score: float = Field(
        ge=0, le=1, description="Median calibrated P(fake) of the track's judged faces (one odd frame does not move it)"
    )
    max_score: float = Field(ge=0, le=1)
    frames: int = Field(ge=1, description="Sampled frames in which the face was judged")
    first_time_s: float
    last_time_s: float
    fake_frames: list[int] = Field(description="Indexes of the sampled frames where this face was labelled fake")
    mean_score: float | None = Field(None, ge=0, le=1, description="Mean calibrated P(fake) of its judged faces")
    face_side: float | None = Field(
        None, description="Median shorter side (pixels) of its judged faces' boxes in the upright frame"
    )
    eligible: bool | None = Field(
        None, description="Whether this track may decide the clip: judged in enough frames, on a face large enough"
    )
    not_eligible: str | None = Field(None, description="Why it may not decide (null when eligible)")


class TopFrame(BaseModel):
    index: int
    time_s: float
    track: int
    score: float = Field(ge=0, le=1)
    image: str | None = Field(None, description="URL of the frame (JPEG, at most 480 px), while the job is kept")
    faces: list[FrameFace] | None = Field(
        None, description="The frame's faces with their heatmaps (jobs submitted with `explain=true`)"
    )


class Sampling(BaseModel):
    step_s: float = Field(description="Seconds between sampled frames")
    frames_planned: int
    frames_analysed: int


class ClipRule(BaseModel):
    """How the clip's label was reached from its tracks (the numbers used for this clip)."""

    min_frames: int = Field(description="Judged sampled frames a track needs to decide the clip", examples=[3])
    min_face_side: float = Field(description="Median shorter face side (pixels) a track needs to decide", examples=[64])
    statistic: Literal["median"] = Field(description="A track's score over its frames")
    eligible_tracks: int = Field(ge=0, description="Tracks that may decide")
    bonferroni: bool = Field(
        description="Whether the fake threshold grows with the eligible tracks (1 - (1 - h) / k); off by default"
    )
    fake_threshold: float = Field(
        ge=0,
        le=1,
        description="What an eligible track's score must reach for `fake`: the card's threshold (see `bonferroni`)",
    )
    real_threshold: float = Field(ge=0, le=1, description="What every eligible track must stay at or below for `real`")


class VideoResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    label: Literal["real", "fake", "uncertain", "no_face"] = Field(
        description=(
            "`fake` if a track that may decide (`eligible`) reaches `clip_rule.fake_threshold`; `real` if at least "
            "one track may decide, all those are real and no track is labelled fake; `no_face` if no face was "
            "judged; else `uncertain`"
        )
    )
    score: float | None = Field(
        ge=0, le=1, description="The most-fake eligible track's score (the most-fake track's when none is eligible)"
    )
    reason: str | None = Field(None, description="Why the clip got its label, in words")
    clip_rule: ClipRule | None = Field(None, description="The rule from tracks to the clip's label, as applied")
    threshold: float
    uncertain_band: tuple[float, float]
    model: ModelInfo
    detectors: list[DetectorInfo]
    video: VideoInfo
    sampling: Sampling
    tracks: list[Track]
    top_frames: list[TopFrame] = Field(description="The most-fake frames, most fake first")
    frames: list[FrameResult] = Field(description="Every sampled frame with its faces")
    warnings: list[str] = Field(default_factory=list)


class Progress(BaseModel):
    done: int = Field(ge=0, description="Sampled frames analysed")
    planned: int | None = Field(None, description="Sampled frames planned (known once analysis starts)")


class Job(BaseModel):
    """A video analysis job. Poll `GET /jobs/{id}` until `state` is done, failed or cancelled."""

    schema_version: Literal["2"] = SCHEMA_VERSION
    id: str = Field(examples=["5b0e7c3f0d5c4a0b9f1e2d3c4b5a6978"])
    kind: Literal["video"] = "video"
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    created_at: float = Field(description="Unix time")
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = Field(None, description="When a finished job and its result are deleted")
    attempts: int = Field(ge=0, description="Times a worker started it (a lost worker's job is retried)")
    progress: Progress
    filename: str | None = None
    size_bytes: int | None = None
    video: VideoInfo | None = Field(None, description="From the header, read at upload")
    result: VideoResult | None = None
    problem: Problem | None = Field(None, description="Why the job failed (`failed` only)")
    links: dict[str, str] = Field(default_factory=dict)


AlertEvent = EventName


class SubscriptionCreate(BaseModel):
    """A webhook (`url`, optional `secret`) or e-mail (`emails`) subscription."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048, examples=["https://hooks.example.com/deepfake"])
    secret: str | None = Field(
        None, description="Standard Webhooks secret (whsec_ + base64); generated when absent, shown once"
    )
    emails: list[str] | None = Field(None, max_length=20, examples=[["moderation@example.com"]])
    events: list[AlertEvent] = Field(default_factory=lambda: [EventName.IMAGE_FAKE, EventName.VIDEO_FAKE])
    min_score: float = Field(0.0, ge=0, le=1, description="Only verdicts with at least this P(fake) (not video.done)")


class Subscription(BaseModel):
    id: str
    source: Literal["settings", "api"]
    channel: Literal["webhook", "email"]
    url: str | None = None
    emails: list[str] | None = None
    events: list[AlertEvent]
    min_score: float
    created_at: float
    secret: str | None = Field(None, description="Only in the answer that created the subscription")


class Subscriptions(BaseModel):
    subscriptions: list[Subscription]


class DeliveryAttempt(BaseModel):
    n: int
    at: float
    outcome: Literal["delivered", "retry", "failed"]
    status: int | None = Field(None, description="HTTP status, or SMTP reply code")
    error: str | None = None
    seconds: float


class Delivery(BaseModel):
    id: str = Field(description="Also the webhook-id header: the same on every attempt")
    subscription: str
    channel: Literal["webhook", "email"]
    event: AlertEvent
    status: Literal["pending", "delivering", "delivered", "failed"]
    created_at: float
    next_at: float | None = Field(None, description="When the next attempt is due (pending)")
    attempts: list[DeliveryAttempt]


class Deliveries(BaseModel):
    deliveries: list[Delivery]
