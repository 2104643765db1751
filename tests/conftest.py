"""Shared fixtures: the real app with the committed model, and dataset access."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from deepfake_api.config import Settings

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "models" / "model.keras"
DATASET_DIR = ROOT.parent / "shared" / "datasets"


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError("the app did not become ready")


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"model_path": MODEL_PATH, "log_json": False}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The real app with the committed model, lifespan run, ready."""
    with TestClient(create_app(make_settings())) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    if not (DATASET_DIR / "MANIFEST.csv").is_file():
        pytest.skip(f"no dataset at {DATASET_DIR}")
    return DATASET_DIR
