"""The image service: one image's bytes in, a Prediction out, and the event it raises.

Routers (predict, batch, URL) call `assess`; nothing here knows HTTP. Events go to a sink the
composition root wires in (the alerts side), off the request's path and bounded: a flood of fakes
with a slow store drops events (counted, logged once) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from deepfake_api import metrics
from deepfake_api.engine import FaceVerdict, Verdict
from deepfake_api.errors import DeadlineExceeded
from deepfake_api.explain import face_extras
from deepfake_api.faces import ImageFaces
from deepfake_api.model import Decision
from deepfake_api.records import EventName
from deepfake_api.schemas import Box, DetectorInfo, DetectorScore, FaceResult, ImageInfo, ModelInfo, Prediction

log = logging.getLogger("deepfake_api.images")
EventSink = Callable[[EventName, dict[str, Any]], object]
MAX_PENDING_EVENTS = 256
"""Events waiting for the store at once; beyond, new ones are dropped (each is a few hundred bytes
and a thread-pool slot, and a store that slow is down for alerts anyway)."""


class Engine(Protocol):
    async def predict(self, data: bytes | bytearray, explain: bool = False) -> Verdict: ...


class Model(Protocol):
    decision: Decision | None

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def sha256(self) -> str: ...

    def detector_info(self) -> list[dict[str, str]]: ...


class ImageService:
    def __init__(self, engine: Engine, model: Model, *, request_timeout_s: float, retry_after_s: int) -> None:
        self.engine = engine
        self.model = model
        self.request_timeout_s = request_timeout_s
        self.retry_after_s = retry_after_s
        self.events: EventSink | None = None  # set once the alerts side is up
        self.max_pending_events = MAX_PENDING_EVENTS
        self._pending = 0
        self._lock = threading.Lock()
        self._emitter = ThreadPoolExecutor(2, thread_name_prefix="image-events")
        self._warned = False

    async def assess(
        self, data: bytes | bytearray, *, started: float, request_id: str, explain: bool = False
    ) -> Prediction:
        """Judge one image, build its Prediction, and raise its event (image.fake, image.uncertain).
        With `explain`, each judged face also gets its heatmap (explain.py)."""
        prediction = prediction_of(self.model, await self.judge(data, explain), started, request_id)
        self.announce(prediction)
        return prediction

    async def judge(self, data: bytes | bytearray, explain: bool = False) -> Verdict:
        """One image through the engine, within the request deadline."""
        try:
            async with asyncio.timeout(self.request_timeout_s):
                if explain:
                    return await self.engine.predict(data, explain=True)
                return await self.engine.predict(data)
        except TimeoutError:
            raise DeadlineExceeded(
                f"No verdict within {self.request_timeout_s:g} s; retry later.",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from None

    def announce(self, prediction: Prediction) -> None:
        """Hand the prediction's event to the sink off the event loop; dropped when too many wait."""
        sink = self.events
        event = image_event(prediction)
        if sink is None or event is None:
            return
        with self._lock:
            if self._pending >= self.max_pending_events:
                metrics.EVENTS_DROPPED.inc()
                return
            self._pending += 1
        try:
            self._emitter.submit(self._emit, sink, *event, prediction.request_id)
        except RuntimeError:  # shutting down
            self._done()

    def _emit(self, sink: EventSink, name: EventName, data: dict[str, Any], request_id: str) -> None:
        try:
            sink(name, data)
            self._warned = False
        except Exception as exc:  # the store is away: this alert is lost, the answer was not
            if not self._warned:  # once per outage, not a traceback per fake verdict
                log.warning("image alert not recorded", extra={"request_id": request_id, "error": type(exc).__name__})
                self._warned = True
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def pending_events(self) -> int:
        return self._pending

    def close(self) -> None:
        self._emitter.shutdown(wait=True)


def image_event(pred: Prediction) -> tuple[EventName, dict[str, Any]] | None:
    """(event, data) for a Prediction worth telling about, else None: the verdict, never the image."""
    if pred.label not in ("fake", "uncertain"):
        return None
    faces = [
        {"box": f.box.model_dump(), "label": f.label, "score": f.score} for f in pred.faces if f.status == "judged"
    ]
    return EventName(f"image.{pred.label}"), {
        "request_id": pred.request_id,
        "label": pred.label,
        "score": pred.score,
        "threshold": pred.threshold,
        "model": {"name": pred.model.name, "version": pred.model.version},
        "faces": faces,
    }


def prediction_of(model: Model, verdict: Verdict, started: float, request_id: str) -> Prediction:
    decision = model.decision
    assert decision is not None
    detectors = model.detector_info()
    return Prediction(
        label=verdict.label,
        score=verdict.score,
        threshold=decision.threshold,
        uncertain_band=(decision.band_low, decision.band_high),
        model=ModelInfo(name=model.name, version=model.version, sha256=model.sha256),
        detectors=[DetectorInfo(**d) for d in detectors],
        image=image_info(verdict.image),
        faces=[face_result(f, detectors, model) for f in verdict.faces],
        processing_time_ms=round((time.perf_counter() - started) * 1000, 2),
        request_id=request_id,
        warnings=verdict.image.warnings,
    )


def image_info(image: ImageFaces) -> ImageInfo:
    return ImageInfo(
        width=image.width,
        height=image.height,
        format=image.format,
        oriented_width=image.oriented_width,
        oriented_height=image.oriented_height,
    )


def face_result(f: FaceVerdict, detectors: list[dict[str, str]], model: Any = None) -> FaceResult:
    face = f.candidate.face
    x, y, w, h = face.box
    return FaceResult(
        status=f.candidate.status,
        box=Box(x=x, y=y, width=w, height=h),
        landmarks=list(face.landmarks),
        detection_score=min(1.0, face.score),
        label=f.label,
        score=f.score,
        detectors=[DetectorScore(**d, score=f.detectors[d["name"]]) for d in detectors if d["name"] in f.detectors],
        **(face_extras(f, model) if model is not None else {}),
    )
