"""Backpressure through the real app: bounded in-flight work (503 + Retry-After) and a deadline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deepfake_api.engine import InferenceEngine
from tests.utils.apps import build_app, serving_async, shared_model
from tests.utils.faces import face_jpeg
from tests.utils.images import jpeg_bytes

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _files(seed: int) -> dict:
    return {"file": (f"{seed}.jpg", face_jpeg(seed), "image/jpeg")}  # one face: one model call


async def _until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def _assert_retry_problem(r: httpx.Response, slug: str, retry_after: str) -> None:
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == retry_after
    assert r.json()["type"].endswith("/" + slug)


async def test_requests_beyond_max_in_flight_get_503_with_retry_after() -> None:
    app = build_app(max_in_flight=2, retry_after_s=2)
    engine: InferenceEngine = app.state.engine
    model = shared_model()
    async with serving_async(app) as client:
        model.gate.clear()  # hold the model so the two admitted requests stay in flight
        held = [asyncio.ensure_future(client.post("/predict", files=_files(i))) for i in range(2)]
        await _until(lambda: engine._in_flight == 2)
        rejected = await asyncio.gather(*(client.post("/predict", files=_files(10 + i)) for i in range(8)))
        model.gate.set()
        admitted = await asyncio.gather(*held)
        after = await client.post("/predict", files=_files(99))
    for r in rejected:
        _assert_retry_problem(r, "overloaded", "2")
        assert "the limit is 2" in r.json()["detail"]
    assert [r.status_code for r in admitted] == [200, 200]
    assert after.status_code == 200, "capacity comes back once the work is done"
    assert engine._in_flight == 0


async def test_at_capacity_a_wrong_file_type_still_gets_415_not_503() -> None:
    app = build_app(max_in_flight=1)
    engine: InferenceEngine = app.state.engine
    async with serving_async(app) as client:
        shared_model().gate.clear()
        held = asyncio.ensure_future(client.post("/predict", files=_files(1)))
        await _until(lambda: engine._in_flight == 1)
        text = await client.post("/predict", files={"file": ("notes.txt", b"not an image at all", "text/plain")})
        image = await client.post("/predict", files=_files(2))
        shared_model().gate.set()
        assert (await held).status_code == 200
    assert text.status_code == 415, text.text
    assert text.json()["type"].endswith("/unsupported-media-type")
    _assert_retry_problem(image, "overloaded", "1")


async def test_a_burst_gets_only_200_or_503_and_at_least_the_capacity_is_served() -> None:
    app = build_app(max_in_flight=4)
    async with serving_async(app) as client:
        shared_model().gate.clear()
        burst = [asyncio.ensure_future(client.post("/predict", files=_files(i % 7))) for i in range(40)]
        await _until(lambda: app.state.engine._in_flight == 4)
        shared_model().gate.set()
        responses = await asyncio.gather(*burst)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 4
    assert codes.count(503) >= 1
    for r in responses:
        if r.status_code == 503:
            _assert_retry_problem(r, "overloaded", "1")
        else:
            assert r.json()["label"] in {"real", "fake", "uncertain"}


async def test_a_request_past_its_deadline_gets_503_and_frees_its_slot() -> None:
    app = build_app(request_timeout_s=2.0, max_in_flight=1, retry_after_s=3)
    model = shared_model()
    async with serving_async(app) as client:
        model.gate.clear()
        late = await client.post("/predict", files=_files(1))
        model.gate.set()
        _assert_retry_problem(late, "deadline-exceeded", "3")
        assert "2 s" in late.json()["detail"]
        await _until(lambda: not model.calls or app.state.engine._in_flight == 0)
        # A faceless image needs no model call, so it is answered well inside the 2 s: the slot is free.
        again = await client.post("/predict", files={"file": ("n.jpg", jpeg_bytes(96, 96, seed=2), "image/jpeg")})
    assert again.status_code == 200, again.text


async def test_work_for_requests_that_timed_out_is_dropped_before_the_model_call() -> None:
    app = build_app(request_timeout_s=0.3, max_batch_size=4)
    model = shared_model()
    async with serving_async(app) as client:
        model.gate.clear()
        first = asyncio.ensure_future(client.post("/predict", files=_files(1)))
        await _until(lambda: app.state.engine._in_flight == 1 and app.state.engine._decoding == 0)
        await asyncio.sleep(0.05)  # the first batch is now inside the (held) model call
        queued = await asyncio.gather(*(client.post("/predict", files=_files(2 + i)) for i in range(3)))
        for r in queued:
            _assert_retry_problem(r, "deadline-exceeded", "1")
        model.gate.set()
        _assert_retry_problem(await first, "deadline-exceeded", "1")
        engine = app.state.engine
        await _until(lambda: engine.queue_depth == 0 and engine._in_flight == 0)
        await asyncio.sleep(0.2)  # time for a wrongly scheduled batch to reach the model
    assert model.calls == [1], f"model calls by batch size: {model.calls}"
