"""A served app with its own job directory, and face tiles the image path judges fake and real."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import DATASET_DIR
from tests.utils.apps import serving
from tests.utils.server import free_port

TILE_HEIGHT = 300


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _tile(path: Path) -> Image.Image:
    img = Image.open(path).convert("RGB")
    if img.height > TILE_HEIGHT:
        img = img.resize((round(img.width * TILE_HEIGHT / img.height), TILE_HEIGHT), Image.LANCZOS)
    return img


@cache
def _rows() -> list[dict[str, str]]:
    manifest = DATASET_DIR / "MANIFEST.csv"
    if not manifest.is_file():
        pytest.skip(f"no dataset at {DATASET_DIR}")
    with manifest.open(newline="") as fh:
        return list(csv.DictReader(fh))


def judged_tile(client: TestClient, label: str, sources: tuple[str, ...]) -> Image.Image:
    """A dataset face of `label` (from `sources`) that /predict, as a tile, labels `label`: for fake, the
    one it is surest of among the first 12 it calls fake (a video re-encodes the tile, so a face only
    just past the card's fake level as a still could fall short in some frames); for real, the first."""
    pool = 12 if label == "fake" else 1
    found: list[tuple[float, Image.Image]] = []
    for row in (r for r in _rows() if r["label"] == label and r["dataset"] in sources):
        tile = _tile(DATASET_DIR / row["file"])
        body = client.post("/predict", files={"file": ("t.png", _png(tile))}).json()
        if body.get("label") == label and len(body["faces"]) == 1:
            found.append((body["score"] if label == "fake" else -body["score"], tile))
            if len(found) == pool:
                break
    if not found:
        pytest.fail(f"no {label} face among {sources} is judged {label} by the served model")
    return max(found, key=lambda f: f[0])[1]


@pytest.fixture(scope="module")
def jobs_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serving(jobs_dir=tmp_path_factory.mktemp("jobs"), video_sample_fps=4.0) as client:
        yield client


@pytest.fixture(scope="module")
def fake_tile(jobs_client: TestClient) -> Image.Image:
    return judged_tile(jobs_client, "fake", ("stylegan3", "celebahq-pairs", "sd-portraits"))


@pytest.fixture(scope="module")
def real_tile(jobs_client: TestClient) -> Image.Image:
    return judged_tile(jobs_client, "real", ("lfw-faceswap", "celebahq-pairs", "ffpp-faces"))


@contextmanager
def redis_server(data: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real redis-server of the test's own (.ci/run installs Debian's redis-server): its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed: .ci/run installs it")
        pytest.skip("no redis-server: apt-get install redis-server (.ci/run does it)")
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url
