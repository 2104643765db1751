"""Domain errors: each carries its HTTP status, a stable problem `type` and a title.

Modules below the API (preprocess, model, engine) raise these; one handler in the API layer
renders them as RFC 9457 `application/problem+json`. Nothing here imports HTTP code.
"""

from __future__ import annotations

PROBLEM_BASE = "https://deepfake-api.example/problems/"


class DeepfakeError(Exception):
    """Base class: a failure a client can understand, with its status and stable type."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def problem(self, **more: object) -> dict[str, object]:
        """The RFC 9457 members of this error, plus `more` (instance, request_id)."""
        return {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail, **more}


class InvalidImage(DeepfakeError):
    status, slug, title = 422, "invalid-image", "The image could not be decoded"


class ImageTooSmall(DeepfakeError):
    status, slug, title = 422, "image-too-small", "The image is too small to judge"


class UnsupportedMediaType(DeepfakeError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported image type"


class PayloadTooLarge(DeepfakeError):
    status, slug, title = 413, "payload-too-large", "The upload is too large"


class ImageTooLarge(DeepfakeError):
    status, slug, title = 413, "image-too-large", "The image has too many pixels"


class InvalidUpload(DeepfakeError):
    status, slug, title = 400, "invalid-upload", "The upload is not a single image file"


class UploadTimeout(DeepfakeError):
    status, slug, title = 408, "upload-timeout", "The upload did not arrive in time"


class ModelNotReady(DeepfakeError):
    status, slug, title = 503, "model-not-ready", "The model is not loaded yet"


class Overloaded(DeepfakeError):
    status, slug, title = 503, "overloaded", "The service is at capacity"


class DeadlineExceeded(DeepfakeError):
    status, slug, title = 503, "deadline-exceeded", "The request took too long"


class Unauthorized(DeepfakeError):
    status, slug, title = 401, "unauthorized", "A valid API key is required"


class RateLimited(DeepfakeError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ModelCardError(Exception):
    """The model file and its card do not match (raised at startup, never to a client)."""


class UploadBudgetFull(DeepfakeError):
    status, slug, title = 503, "upload-capacity", "Too many uploads are in progress"


class MalformedRequest(DeepfakeError):
    status, slug, title = 400, "malformed-request", "The HTTP request is malformed"


class HeadersTooLarge(DeepfakeError):
    status, slug, title = 431, "headers-too-large", "The request headers are too large"


class HeaderTimeout(DeepfakeError):
    status, slug, title = 408, "header-timeout", "The request headers did not arrive in time"


class CorsRefused(DeepfakeError):
    status, slug, title = 400, "cors-refused", "The cross-origin request is not allowed"


# Images by URL: every failure of a fetch the client asked for is a 4xx with its own type.
class UrlInvalid(DeepfakeError):
    status, slug, title = 422, "url-invalid", "The URL cannot be fetched"


class UrlForbidden(DeepfakeError):
    status, slug, title = 403, "url-forbidden", "The URL points where this service does not fetch"


class UrlUnreachable(DeepfakeError):
    status, slug, title = 422, "url-unreachable", "The URL could not be fetched"


class UrlTimeout(DeepfakeError):
    status, slug, title = 422, "url-timeout", "The URL did not answer in time"


class UrlTooLarge(DeepfakeError):
    status, slug, title = 413, "url-too-large", "The image at the URL is too large"


class UrlNotAnImage(DeepfakeError):
    status, slug, title = 415, "url-not-an-image", "The URL does not hold an accepted image"


# Videos and jobs: every bad clip is a 4xx at upload or a failed job with one of these types.
class UnsupportedVideoType(DeepfakeError):
    status, slug, title = 415, "unsupported-video-type", "Unsupported video type"


class InvalidVideo(DeepfakeError):
    status, slug, title = 422, "invalid-video", "The video could not be decoded"


class NoVideoStream(DeepfakeError):
    status, slug, title = 422, "no-video-stream", "The file holds no video stream"


class VideoTooSmall(DeepfakeError):
    status, slug, title = 422, "video-too-small", "The video's frames are too small to judge"


class VideoTooLarge(DeepfakeError):
    status, slug, title = 413, "video-too-large", "The video's frames have too many pixels"


class VideoTooLong(DeepfakeError):
    status, slug, title = 413, "video-too-long", "The video is too long"


class JobNotFound(DeepfakeError):
    status, slug, title = 404, "job-not-found", "No such job"


class ReportNotFound(DeepfakeError):
    status, slug, title = 404, "report-not-found", "No such report"


class QueueFull(DeepfakeError):
    status, slug, title = 503, "queue-full", "The video queue is full"


class TooManyJobs(DeepfakeError):
    status, slug, title = 429, "too-many-jobs", "Too many videos of yours are waiting"


class QueueUnavailable(DeepfakeError):
    status, slug, title = 503, "queue-unavailable", "The job queue cannot be reached"


class WorkerLost(DeepfakeError):
    status, slug, title = 500, "worker-lost", "The worker analysing the video stopped"


class JobTimeout(DeepfakeError):
    status, slug, title = 500, "job-timeout", "The analysis took too long"


class AnalysisFailed(DeepfakeError):
    status, slug, title = 500, "analysis-failed", "The analysis failed"


class SubscriptionsDisabled(DeepfakeError):
    status, slug, title = 403, "subscriptions-disabled", "Subscriptions need an API key"


class InvalidSubscription(DeepfakeError):
    status, slug, title = 422, "invalid-subscription", "The subscription is not valid"


class SubscriptionNotFound(DeepfakeError):
    status, slug, title = 404, "subscription-not-found", "No such subscription"


class SubscriptionReadOnly(DeepfakeError):
    status, slug, title = 409, "subscription-read-only", "The subscription comes from the settings"
