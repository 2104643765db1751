"""Apps with non-default settings around the committed model, loaded once per test run.

Each `create_app` would otherwise reload the encoder and detectors (seconds per app). The
shared model is the real one; only its second and later `load()` calls are skipped. `gate`
lets a test hold the model call to make overload and deadlines deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache

import httpx
import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from deepfake_api.model import DeepfakeModel, FaceScores
from tests.conftest import MODEL_PATH, make_settings, wait_ready


class SharedModel(DeepfakeModel):
    """The committed model; loads once, and `gate` (open by default) can hold every model call."""

    def __init__(self) -> None:
        super().__init__(MODEL_PATH)
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[int] = []

    def load(self) -> None:
        if self.decision is None:
            super().load()

    def predict_faces(self, crops: np.ndarray, explain: bool = False) -> FaceScores:
        assert self.gate.wait(timeout=60), "a test left the model gate closed"
        self.calls.append(len(crops))
        return super().predict_faces(crops, explain)


@cache
def shared_model() -> SharedModel:
    return SharedModel()


def build_app(**overrides: object) -> FastAPI:
    model = shared_model()
    model.gate.set()
    model.calls.clear()
    return create_app(make_settings(**overrides), model=model)


@contextmanager
def serving(**overrides: object) -> Iterator[TestClient]:
    """A ready TestClient on an app built with these settings."""
    with TestClient(build_app(**overrides)) as client:
        wait_ready(client)
        shared_model().calls.clear()
        yield client


@asynccontextmanager
async def serving_async(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan in the test's own event loop and talk to it through ASGITransport.

    Unlike TestClient, ASGITransport streams the request body chunk by chunk and lets requests
    overlap on one loop, which is what the streaming and backpressure tests need.
    """
    async with app.router.lifespan_context(app):
        await app.state.loader  # model loaded and warmed, engine started
        shared_model().calls.clear()  # forget the warm-up calls
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
