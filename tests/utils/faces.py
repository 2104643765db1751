"""Face images for tests, composed from ../shared/datasets (tests using them skip when it is absent).

`face_tile(i)` is a real face photo from the dataset; `compose` pastes tiles onto a larger canvas
at known places, so a test knows where every face is."""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_api import assets, faces
from tests.conftest import DATASET_DIR

TILE_SOURCE = "lfw-faceswap"  # 250 px photos, one centred face each


@cache
def _tile_files() -> list[Path]:
    manifest = DATASET_DIR / "MANIFEST.csv"
    if not manifest.is_file():
        pytest.skip(f"no dataset at {DATASET_DIR}")
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == TILE_SOURCE and r["label"] == "real"]
    detector = faces.FaceDetector(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    single = []  # lfw photos often show other people too: keep the ones with exactly one face
    for r in sorted(rows, key=lambda r: r["file"])[:80]:
        path = DATASET_DIR / r["file"]
        found = detector.detect(np.asarray(Image.open(path).convert("RGB")))
        if len(found) == 1 and found[0].score > 0.85:
            single.append(path)
    return single[:24]


def face_tile(i: int) -> Image.Image:
    files = _tile_files()
    return Image.open(files[i % len(files)]).convert("RGB")


def face_jpeg(i: int = 0) -> bytes:
    files = _tile_files()
    return files[i % len(files)].read_bytes()


def compose(
    size: tuple[int, int], places: list[tuple[int, int]], *, tile_scale: float = 1.0, seed: int = 0
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A noisy grey canvas with face tiles pasted at `places` (top-left corners); returns the image
    and each tile's rectangle (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    canvas = Image.fromarray(rng.integers(90, 140, (size[1], size[0], 3), dtype=np.uint8))
    rects = []
    for k, (x, y) in enumerate(places):
        tile = face_tile(k)
        if tile_scale != 1.0:
            tile = tile.resize((round(tile.width * tile_scale), round(tile.height * tile_scale)), Image.LANCZOS)
        canvas.paste(tile, (x, y))
        rects.append((x, y, tile.width, tile.height))
    return canvas, rects


def jpeg(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **params)
    return buf.getvalue()


def png_of(data: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, "PNG")
    return buf.getvalue()
