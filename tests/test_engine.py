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

from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import InvalidImage, ModelNotReady, Overloaded, UnsupportedMediaType
from deepfake_api.model import Decision
from deepfake_api.preprocess import preprocess
from tests.utils.images import encode

pytestmark = pytest.mark.anyio
NEVER_MS = 60_000.0  # a time cap no test reaches: batches close by size or idleness only
DECISION = Decision(temperature=32.0, threshold=0.5, band_low=0.4, band_high=0.6)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeModel:
    """logit = mean pixel of the local view - 128, so every caller can check it got its own."""

    def __init__(self, *, error: Exception | None = None) -> None:
        self.decision: Decision | None = DECISION
        self.error = error
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.concurrent = 0  # model calls overlapping another one: the interpreter is not thread-safe
        self._active = 0
        self._lock = threading.Lock()

    def predict_logits(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
        assert local.shape[0] == global_.shape[0]
        with self._lock:
            self._active += 1
            self.concurrent += self._active > 1
        try:
            self.gate.wait(timeout=120)  # a bound so a failing test cannot hang the run
            self.batches.append(len(local))
            if self.error is not None:
                raise self.error
            return local.reshape(len(local), -1).mean(axis=1) - 128.0
        finally:
            with self._lock:
                self._active -= 1


def _image(i: int) -> bytes:
    """A flat JPEG whose brightness (and so the fake logit) differs for each i."""
    return encode(Image.fromarray(np.full((64, 64 + i % 5, 3), 10 + 5 * i, np.uint8)), "JPEG")


def _images(n: int) -> list[bytes]:
    return [_image(i) for i in range(n)]


def _expected_score(data: bytes) -> float:
    _, inputs = preprocess(data)
    return float(DECISION.score(np.array([inputs.local.mean() - 128.0]))[0])


def _decode_together(n: int) -> Any:
    """`preprocess`, but the first n calls return only once all n have decoded (then as usual)."""
    barrier = threading.Barrier(n, timeout=60)
    calls = itertools.count()  # next() on it is atomic under the GIL

    def decode(data: bytes) -> Any:
        out = preprocess(data)
        if next(calls) < n:
            barrier.wait()
        return out

    return decode


def _closed_by(reason: str) -> float:
    return REGISTRY.get_sample_value("deepfake_inference_batches_total", {"closed_by": reason}) or 0.0


async def _started(model: FakeModel, **options: Any) -> InferenceEngine:
    settings: dict[str, Any] = {"max_batch_size": 8, "max_wait_ms": NEVER_MS, "decode_threads": 2}
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
    assert sum(model.batches) == 40
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
    assert sum(model.batches) == 48
    assert model.concurrent == 0, "two model calls overlapped"


async def test_batch_size_cap_holds(model: FakeModel) -> None:
    engine = await _started(model, max_batch_size=4)
    await asyncio.gather(*(engine.predict(data) for data in _images(18)))
    await engine.stop()
    assert sum(model.batches) == 18
    assert max(model.batches) == 4


async def test_idle_request_is_not_held_for_max_wait(model: FakeModel) -> None:
    engine = await _started(model)
    idle_before, wait_before = _closed_by("idle"), _closed_by("wait")
    verdict = await engine.predict(_image(7))
    await engine.stop()
    assert model.batches == [1]
    assert _closed_by("idle") == idle_before + 1, "the batch should close because nothing else was decoding"
    assert _closed_by("wait") == wait_before
    assert verdict.score == _expected_score(_image(7))


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
    assert sum(model.batches) == 6


async def test_model_error_reaches_every_waiter_of_the_batch() -> None:
    failing = FakeModel(error=RuntimeError("the model exploded"))
    # The six finish decoding together, so they form one batch whatever the thread timing.
    engine = await _started(failing, decode_threads=6, decode=_decode_together(6))
    results = await asyncio.gather(*(engine.predict(d) for d in _images(6)), return_exceptions=True)
    assert failing.batches == [6]
    assert all(isinstance(r, RuntimeError) and str(r) == "the model exploded" for r in results)
    failing.error = None  # the batch loop survived: the next request is served
    verdict = await engine.predict(_image(30))
    await engine.stop()
    assert verdict.score == _expected_score(_image(30))


async def test_a_wrong_sized_model_answer_fails_its_batch_and_the_engine_carries_on() -> None:
    class ShortModel(FakeModel):
        def predict_logits(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
            return super().predict_logits(local, global_)[:-1]  # one score short (or raises `error`)

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
    assert sum(model.batches) == 2


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
