"""Shared fixtures: the real app with the committed model, and dataset access."""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from deepfake_api.config import Settings

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "models" / "model_card.json"
"""The served model's card; its sha256 is the one responses report."""
DATASET_DIR = ROOT.parent / "shared" / "datasets"


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/health/ready")
        if r.status_code == 200:
            return
        if r.json().get("status") == "failed":
            raise RuntimeError(f"the model failed to load: {r.json().get('reason')}")
        time.sleep(0.05)
    raise TimeoutError("the app did not become ready")


def _jobs_dir() -> Path:
    """A job store of the test run's own: never the user's ~/.local/state, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="deepfake-jobs-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"model_path": MODEL_PATH, "log_json": False, "jobs_dir": _jobs_dir()}
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


@pytest.fixture(scope="session")
def live_server() -> Iterator[str]:
    """The real app with the committed model behind uvicorn on a free local port, ready: its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the port is held from here on: no race with another process
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # ws="none": no websocket routes, and the websockets library warns on import (warnings are errors).
    config = uvicorn.Config(create_app(make_settings()), log_level="warning", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    thread.start()
    try:
        # Generous: on a busy 2-core machine loading TensorFlow and warming the model can be slow.
        deadline = time.monotonic() + 300
        while (health := _readiness(url)).get("status") != "ok":
            if health.get("status") == "failed" or not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the live server at {url} did not become ready: {health}")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _readiness(url: str) -> dict[str, object]:
    try:
        body: dict[str, object] = httpx.get(url + "/health/ready", timeout=5).json()
        return body
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": "unreachable", "error": repr(exc)}
