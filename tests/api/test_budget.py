"""The body budget (api/budget.py): reserved before a body is read, refused at once beyond it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.utils.apps import build_app, serving_async
from tests.utils.faces import face_jpeg
from tests.utils.hostile import file_part, multipart
from tests.utils.problems import assert_problem

UPLOAD_LIMIT = 256 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeldBody:
    """A request body that sends its first chunk, then waits until released."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[:1024]
        self.started.set()
        await self.release.wait()
        yield self.data[1024:]


@pytest.mark.anyio
async def test_a_body_that_does_not_fit_the_budget_is_refused_before_it_is_kept(dataset_dir: object) -> None:
    """Budget = one upload: a second upload while the first is held gets 503 + Retry-After at once
    (its body read and dropped), and the first is still judged once it arrives."""
    image = face_jpeg()
    body, ctype = multipart([file_part(image)])
    app = build_app(max_upload_bytes=UPLOAD_LIMIT, max_batch_bytes=UPLOAD_LIMIT, body_budget_bytes=UPLOAD_LIMIT)
    async with serving_async(app) as client:
        held = HeldBody(body)
        first = asyncio.create_task(
            client.post("/predict", content=held, headers={"content-type": ctype})  # no length: reserves the limit
        )
        await asyncio.wait_for(held.started.wait(), 30)
        assert app.state.body_budget.used == UPLOAD_LIMIT
        second = await client.post("/predict", content=body, headers={"content-type": ctype})
        problem = assert_problem(second, 503, "upload-capacity")
        assert second.headers["retry-after"] == "1"
        assert "budget" in problem["detail"]
        held.release.set()
        r = await asyncio.wait_for(first, 60)
        assert r.status_code == 200, r.text
        assert r.json()["faces"], r.json()
        assert app.state.body_budget.used == 0
        third = await client.post("/predict", content=body, headers={"content-type": ctype})
        assert third.status_code == 200, third.text
        assert app.state.body_budget.peak == UPLOAD_LIMIT


def test_the_default_budget_follows_the_memory_limit() -> None:
    from deepfake_api.config import BODY_BUDGET_CAP, Settings, memory_limit

    limit = memory_limit()
    assert limit is not None and limit > 0
    s = Settings(workers=2)
    assert s.body_budget_bytes == max(s.max_upload_bytes, s.max_batch_bytes, min(BODY_BUDGET_CAP, limit // 4 // 2))


def test_the_budget_always_fits_one_upload() -> None:
    from deepfake_api.config import Settings

    s = Settings(body_budget_bytes=1024, max_upload_bytes=4096, max_batch_bytes=8192)
    assert s.body_budget_bytes == 8192
