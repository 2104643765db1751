"""services/images.py: events leave the request path, bounded; the event says the verdict only."""

from __future__ import annotations

import threading
import time

from prometheus_client import REGISTRY

from deepfake_api.records import EventName
from deepfake_api.schemas import ModelInfo, Prediction
from deepfake_api.services.images import ImageService, image_event


def _prediction(label: str, request_id: str = "r1") -> Prediction:
    return Prediction.model_construct(
        label=label,
        score=0.9,
        threshold=0.5,
        model=ModelInfo(name="m", version="v", sha256="0" * 64),
        faces=[],
        request_id=request_id,
    )


def _dropped() -> float:
    return REGISTRY.get_sample_value("deepfake_alert_events_dropped_total") or 0.0


def test_a_flood_of_fakes_with_a_stuck_store_holds_a_bounded_number_of_events() -> None:
    """Issue 27 defect 4: one background task per fake verdict grew without limit."""
    service = ImageService(engine=None, model=None, request_timeout_s=1, retry_after_s=1)  # type: ignore[arg-type]
    service.max_pending_events = 8
    release = threading.Event()
    got: list[tuple[str, str]] = []

    def stuck_sink(name: EventName, data: dict[str, object]) -> None:
        release.wait(30)
        got.append((name, str(data["request_id"])))

    service.events = stuck_sink
    before = _dropped()
    for i in range(100):
        service.announce(_prediction("fake", f"r{i}"))
    assert service.pending_events == 8
    assert _dropped() - before == 92
    release.set()
    deadline = time.monotonic() + 30
    while service.pending_events and time.monotonic() < deadline:
        time.sleep(0.01)
    service.close()
    assert sorted(got) == sorted((EventName.IMAGE_FAKE, f"r{i}") for i in range(8))


def test_a_real_verdict_raises_no_event_and_a_failing_store_fails_no_answer() -> None:
    service = ImageService(engine=None, model=None, request_timeout_s=1, retry_after_s=1)  # type: ignore[arg-type]
    calls: list[str] = []

    def broken_sink(name: EventName, data: dict[str, object]) -> None:
        calls.append(name)
        raise ConnectionError("store down")

    service.events = broken_sink
    service.announce(_prediction("real"))
    service.announce(_prediction("uncertain"))
    service.close()  # waits for the emitter: the error stayed there
    assert calls == [EventName.IMAGE_UNCERTAIN]


def test_the_event_carries_the_verdict_not_the_image() -> None:
    event = image_event(_prediction("fake"))
    assert event is not None
    name, data = event
    assert name == "image.fake"
    assert data == {
        "request_id": "r1",
        "label": "fake",
        "score": 0.9,
        "threshold": 0.5,
        "model": {"name": "m", "version": "v"},
        "faces": [],
    }
    assert image_event(_prediction("no_face")) is None
