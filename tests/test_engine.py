"""InferenceEngine with a plain-Python fake model: batching, caps, errors, admission and drain.

No assertion here depends on timing. Where a test needs batches to form, max_wait is set far
above anything a test run takes, so a batch closes only at the size cap or when nothing else
is decoding, both of which follow from the order of events alone.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from deepfake_api.detectors.fusion import sigmoid
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import InvalidImage, ModelNotReady, Overloaded, UnsupportedMediaType
from deepfake_api.faces import CROP_SIZE, Face, FaceCandidate, ImageFaces
from deepfake_api.model import Decision, FaceScores
from deepfake_api.preprocess import decode_image
from tests.utils.images import encode

pytestmark = pytest.mark.anyio
NEVER_MS = 60_000.0  # a time cap no test reaches: batches close by size or idleness only
DECISION = Decision(threshold=0.5, band_low=0.4, band_high=0.6)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeModel:
    """P(fake) of a face = sigmoid((mean pixel of its crop - 128) / 32), so every caller can check it got its own."""

    def __init__(self, *, error: Exception | None = None) -> None:
        self.decision: Decision | None = DECISION
        self.error = error
        self.batches: list[int] = []
        self.levels: list[list[int]] = []  # each batch's crops by brightness: who was in it, in order
        self.gate = threading.Event()
        self.gate.set()
        self.concurrent = 0  # model calls overlapping another one: the interpreter is not thread-safe
        self._active = 0
        self._lock = threading.Lock()

    def predict_faces(self, crops: np.ndarray) -> FaceScores:
        with self._lock:
            self._active += 1
            self.concurrent += self._active > 1
        try:
            self.gate.wait(timeout=120)  # a bound so a failing test cannot hang the run
            self.batches.append(len(crops))
            self.levels.append([round(float(c.mean())) for c in crops])
            if self.error is not None:
                raise self.error
            fused = _face_score(crops.reshape(len(crops), -1).mean(axis=1))
            return FaceScores(fused=fused, by_detector={"fake-detector": fused})
        finally:
            with self._lock:
                self._active -= 1


def _face_score(mean: np.ndarray) -> np.ndarray:
    return sigmoid((np.asarray(mean, np.float64) - 128.0) / 32.0)


def decode_faces(data: bytes) -> ImageFaces:
    """A stand-in for the face path: 1-3 flat "faces" (by the image's width), each a shade brighter."""
    rgb = decode_image(data, min_side=1).rgb
    level = int(round(float(rgb.mean())))
    n = 1 + (rgb.shape[1] - 64) % 3
    face = Face(box=(0.0, 0.0, 40.0, 40.0), landmarks=((1.0, 1.0),) * 5, score=0.9)
    crops = [np.full((CROP_SIZE, CROP_SIZE, 3), level + k, np.uint8) for k in range(n)]
    return ImageFaces(64, 64, 64, 64, "JPEG", [], [FaceCandidate(face, "judged", c) for c in crops])


def _image(i: int) -> bytes:
    """A flat JPEG whose brightness (and so the fake score) differs for each i, with 1-3 faces."""
    return encode(Image.fromarray(np.full((64, 64 + i % 5, 3), 10 + 5 * i, np.uint8)), "JPEG")


def _n_faces(data: bytes) -> int:
    return len(decode_faces(data).faces)


def _images(n: int) -> list[bytes]:
    return [_image(i) for i in range(n)]


def _expected_score(data: bytes) -> float:
    """The most-fake face's score: the brightest crop."""
    crops = [c.crop for c in decode_faces(data).faces]
    return round(float(_face_score(np.array([max(c.mean() for c in crops if c is not None)]))[0]), 6)


def _decode_together(n: int) -> Any:
    """`decode_faces`, but the first n calls return only once all n have decoded (then as usual)."""
    barrier = threading.Barrier(n, timeout=60)
    calls = itertools.count()  # next() on it is atomic under the GIL

    def decode(data: bytes) -> Any:
        out = decode_faces(data)
        if next(calls) < n:
            barrier.wait()
        return out

    return decode


def _closed_by(reason: str) -> float:
    return REGISTRY.get_sample_value("deepfake_inference_batches_total", {"closed_by": reason}) or 0.0


async def _started(model: FakeModel, **options: Any) -> InferenceEngine:
    settings: dict[str, Any] = {
        "max_batch_size": 8,
        "max_wait_ms": NEVER_MS,
        "decode_threads": 2,
        "decode": decode_faces,
    }
    engine = InferenceEngine(model, **{**settings, **options})
    await engine.start()
    return engine


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


async def test_each_concurrent_caller_gets_its_own_result(model: FakeModel) -> None:
    engine = await _started(model)
    images = _images(40)
    verdicts = await asyncio.gather(*(engine.predict(data) for data in images))
    await engine.stop()
    assert [v.score for v in verdicts] == [_expected_score(data) for data in images]
    assert sum(model.batches) == sum(_n_faces(d) for d in images)
    assert max(model.batches) > 1, "concurrent requests should share model calls"
    assert model.concurrent == 0, "two model calls overlapped"


async def test_staggered_callers_mixing_idle_and_batched_calls_each_get_their_own(model: FakeModel) -> None:
    """Arrivals spread out in time take both paths: the decode worker's own call when the engine
    is idle, and batches in the model thread otherwise. Never two model calls at once."""
    engine = await _started(model, max_wait_ms=1.0)
    images = _images(48)

    async def later(i: int, data: bytes) -> float:
        await asyncio.sleep((i % 7) * 0.002)
        return (await engine.predict(data)).score

    scores = await asyncio.gather(*(later(i, d) for i, d in enumerate(images)))
    await engine.stop()
    assert scores == [_expected_score(d) for d in images]
    assert sum(model.batches) == sum(_n_faces(d) for d in images)
    assert model.concurrent == 0, "two model calls overlapped"


async def test_batch_size_cap_holds_in_faces_and_keeps_images_whole(model: FakeModel) -> None:
    engine = await _started(model, max_batch_size=4)
    images = _images(18)
    await asyncio.gather(*(engine.predict(data) for data in images))
    await engine.stop()
    assert sum(model.batches) == sum(_n_faces(d) for d in images)
    assert max(model.batches) <= 4
    assert max(model.batches) > 3, "batches should fill up to the cap"


async def test_the_image_verdict_is_its_most_fake_face(model: FakeModel) -> None:
    engine = await _started(model)
    data = _image(2)  # three faces
    verdict = await engine.predict(data)
    await engine.stop()
    scores = [f.score for f in verdict.faces]
    assert len(scores) == 3 and len(set(scores)) == 3
    assert verdict.score == max(s for s in scores if s is not None) == _expected_score(data)
    assert verdict.label == DECISION.label(verdict.score)


async def test_an_image_without_faces_is_answered_without_the_model(model: FakeModel) -> None:
    def no_faces(data: bytes) -> ImageFaces:
        return ImageFaces(64, 64, 64, 64, "JPEG", [], [])

    engine = await _started(model, decode=no_faces)
    verdict = await engine.predict(_image(1))
    await engine.stop()
    assert (verdict.label, verdict.score, verdict.faces) == ("no_face", None, [])
    assert model.batches == []


async def test_idle_request_is_not_held_for_max_wait(model: FakeModel) -> None:
    engine = await _started(model)
    idle_before, wait_before = _closed_by("idle"), _closed_by("wait")
    verdict = await engine.predict(_image(5))  # one face
    await engine.stop()
    assert model.batches == [1]
    assert _closed_by("idle") == idle_before + 1, "the batch should close because nothing else was decoding"
    assert _closed_by("wait") == wait_before
    assert verdict.score == _expected_score(_image(5))


async def test_undecodable_image_fails_alone(model: FakeModel) -> None:
    engine = await _started(model)
    good = _images(6)
    bad = [b"this is not an image", good[0][:200]]
    mixed = [*good[:3], *bad, *good[3:]]
    results = await asyncio.gather(*(engine.predict(d) for d in mixed), return_exceptions=True)
    await engine.stop()
    assert isinstance(results[3], UnsupportedMediaType)
    assert isinstance(results[4], InvalidImage)
    scores = [r.score for r in [*results[:3], *results[5:]]]  # type: ignore[union-attr]
    assert scores == [_expected_score(d) for d in good]
    assert sum(model.batches) == sum(_n_faces(d) for d in good)


async def test_model_error_reaches_every_waiter_of_the_batch() -> None:
    failing = FakeModel(error=RuntimeError("the model exploded"))
    # The six finish decoding together, so they form one batch whatever the thread timing.
    engine = await _started(failing, decode_threads=6, decode=_decode_together(6), max_batch_size=64)
    results = await asyncio.gather(*(engine.predict(d) for d in _images(6)), return_exceptions=True)
    assert failing.batches == [sum(_n_faces(d) for d in _images(6))]
    assert all(isinstance(r, RuntimeError) and str(r) == "the model exploded" for r in results)
    failing.error = None  # the batch loop survived: the next request is served
    verdict = await engine.predict(_image(30))
    await engine.stop()
    assert verdict.score == _expected_score(_image(30))


async def test_a_wrong_sized_model_answer_fails_its_batch_and_the_engine_carries_on() -> None:
    class ShortModel(FakeModel):
        def predict_faces(self, crops: np.ndarray) -> FaceScores:
            scores = super().predict_faces(crops)  # (or raises `error`)
            return FaceScores(scores.fused[:-1], scores.by_detector)  # one score short

    model = ShortModel()
    engine = await _started(model)
    results = await asyncio.gather(*(engine.predict(d) for d in _images(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "scores for" in str(r) for r in results)
    model.error = RuntimeError("now it raises")  # the thread survived the first failure
    with pytest.raises(RuntimeError, match="now it raises"):
        await engine.predict(_image(11))
    assert engine.running
    await engine.stop()


async def test_admission_beyond_max_in_flight_is_overloaded(model: FakeModel) -> None:
    model.gate.clear()
    engine = await _started(model, max_in_flight=2, retry_after_s=3)
    admitted = [asyncio.ensure_future(engine.predict(data)) for data in _images(2)]
    await asyncio.sleep(0)  # both are admitted (and held by the gate)
    with pytest.raises(Overloaded) as caught:
        await engine.predict(_image(9))
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "3"}
    model.gate.set()
    await asyncio.gather(*admitted)
    await engine.stop()
    assert sum(model.batches) == sum(_n_faces(d) for d in _images(2))


async def test_stop_drains_admitted_requests(model: FakeModel) -> None:
    model.gate.clear()
    engine = await _started(model)
    images = _images(10)
    tasks = [asyncio.ensure_future(engine.predict(data)) for data in images]
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0)
    model.gate.set()
    await stopping
    assert all(t.done() and not t.cancelled() for t in tasks)
    assert [t.result().score for t in tasks] == [_expected_score(d) for d in images]
    assert not engine.running
    with pytest.raises(ModelNotReady):
        await engine.predict(images[0])


def _frame(level: int) -> ImageFaces:
    face = Face(box=(0.0, 0.0, 40.0, 40.0), landmarks=((1.0, 1.0),) * 5, score=0.9)
    crop = np.full((CROP_SIZE, CROP_SIZE, 3), level, np.uint8)
    return ImageFaces(64, 64, 64, 64, "video", [], [FaceCandidate(face, "judged", crop)])


async def _until(condition: Any) -> None:
    for _ in range(6000):  # a bound so a failing test cannot hang the run, not a timing assertion
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the engine never got there")


@pytest.mark.parametrize(
    ("frame_max_wait_ms", "second_batch", "third_batch"),
    [
        (NEVER_MS, [10, 25, 35, 50], [250]),  # images first; the frame after them
        (0.0, [250], [10, 25, 35, 50]),  # the frame has waited its bound: next, in a batch of its own
    ],
)
async def test_video_frames_come_after_images_but_never_wait_past_their_bound(
    model: FakeModel, frame_max_wait_ms: float, second_batch: list[int], third_batch: list[int]
) -> None:
    """Issue 27 defect 16: frames queued first-come with images waited behind every image."""
    engine = await _started(model, max_batch_size=4, frame_max_wait_ms=frame_max_wait_ms)
    model.gate.clear()
    busy = asyncio.ensure_future(engine.predict(_image(1)))  # holds the model
    await _until(lambda: model._active == 1)
    frame = engine.score_frame(_frame(250))  # queued before the images below
    images = [asyncio.ensure_future(engine.predict(_image(i))) for i in (0, 3, 5, 8)]  # one face each
    await _until(lambda: engine.queue_depth == 5)
    model.gate.set()
    await asyncio.gather(busy, *images)
    assert frame.result(timeout=60).score is not None
    await engine.stop()
    assert model.levels[1:] == [second_batch, third_batch]
