"""Liveness and readiness, before and after the model is loaded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from deepfake_api import assets
from deepfake_api.app import create_app
from deepfake_api.model import DeepfakeModel
from tests.conftest import MODEL_PATH, make_settings, wait_ready
from tests.utils.images import jpeg_bytes


class GatedModel(DeepfakeModel):
    """The real model, whose load waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(MODEL_PATH)
        self.gate = threading.Event()

    def load(self) -> None:
        assert self.gate.wait(60)
        super().load()


def test_ready_is_503_until_the_model_is_loaded_then_200() -> None:
    model = GatedModel()
    with TestClient(create_app(make_settings(), model=model)) as client:
        live = client.get("/health/live")
        assert live.status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["status"] == "starting"
        early = client.post("/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
        assert early.status_code == 503
        assert early.headers["content-type"] == "application/problem+json"
        assert early.headers["retry-after"] == "1"
        assert early.json()["type"].endswith("/model-not-ready")
        model.gate.set()
        wait_ready(client)
        body = client.get("/health").json()
        assert body["ready"] is True and body["status"] == "ok"
        assert body["model"]["version"] == model.version
        assert client.post("/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")}).status_code == 200


def test_health_reports_model_and_replica(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["name"] and body["replica"]


class BrokenModel(DeepfakeModel):
    """The real model class whose network file turns out unreadable after the card check."""

    def load(self) -> None:
        raise OSError("disk read error")


def test_a_failed_load_turns_liveness_and_readiness_to_503() -> None:
    with TestClient(create_app(make_settings(), model=BrokenModel(MODEL_PATH))) as client:
        deadline = time.monotonic() + 30
        while client.get("/health/live").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        live = client.get("/health/live")
        assert live.status_code == 503 and live.json()["status"] == "failed"
        assert client.get("/health/ready").json()["status"] == "failed"


def _failed_health(**overrides: object) -> dict[str, object]:
    with TestClient(create_app(make_settings(**overrides))) as client:
        deadline = time.monotonic() + 60
        while client.get("/health/live").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        body: dict[str, object] = ready.json()
        return body


def test_a_missing_encoder_file_leaves_the_service_not_ready_and_says_why(tmp_path: Path) -> None:
    (tmp_path / assets.ASSETS["yunet"].file).write_bytes(assets.path("yunet").read_bytes())
    body = _failed_health(assets_dir=tmp_path)
    assert body["status"] == "failed"
    assert "image encoder file missing" in str(body["reason"])
    assert str(tmp_path) not in str(body["reason"]), "no server paths to clients"


def test_an_encoder_file_with_the_wrong_hash_leaves_the_service_not_ready(tmp_path: Path) -> None:
    (tmp_path / assets.ASSETS["yunet"].file).write_bytes(assets.path("yunet").read_bytes())
    (tmp_path / assets.ASSETS["clip"].file).write_bytes(b"not the encoder")
    body = _failed_health(assets_dir=tmp_path)
    assert body["status"] == "failed" and "sha256" in str(body["reason"])
