"""What is stored, typed: event names (one enum) and, as they move here, the records of jobs,
alerts, subscriptions and the model card. Validated where written, read back typed."""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    """Every event an alert subscription can ask for."""

    IMAGE_FAKE = "image.fake"
    IMAGE_UNCERTAIN = "image.uncertain"
    VIDEO_DONE = "video.done"
    VIDEO_FAKE = "video.fake"
    VIDEO_UNCERTAIN = "video.uncertain"
