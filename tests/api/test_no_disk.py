"""Uploads never touch the disk: no new file in the temp dir or the cwd, nothing opened for writing."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.utils.images import encode

_WRITES: list[str] = []
_WATCHING = threading.Event()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING.is_set() and event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags & _WRITE_FLAGS):
            _WRITES.append(str(path))


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records while a test watches


def _snapshot(*dirs: Path) -> set[Path]:
    return {p for d in dirs for p in d.rglob("*")}


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """A private temp dir and cwd for the duration of the test (other processes use /tmp too)."""
    tmp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    tmp.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.chdir(cwd)
    assert tempfile.gettempdir() == str(tmp)
    _WRITES.clear()
    _WATCHING.set()
    try:
        yield [tmp, cwd]
    finally:
        _WATCHING.clear()


def _five_megabyte_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, size=(1300, 1300, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG", compress_level=1)
    assert 5_000_000 < len(data) < 10 * 1024 * 1024
    return data


def test_uploads_leave_no_file_on_disk(client: TestClient, watched: list[Path]) -> None:
    big = _five_megabyte_png()
    before = _snapshot(*watched)
    ok = client.post("/predict", files={"file": ("big.png", big, "image/png")})
    refused = client.post("/predict", files={"file": ("huge.png", big + b"\0" * (6 * 1024 * 1024), "image/png")})
    assert ok.status_code == 200, ok.text
    assert ok.json()["image"] == {
        "width": 1300,
        "height": 1300,
        "format": "PNG",
        "oriented_width": 1300,
        "oriented_height": 1300,
    }
    assert refused.status_code == 413
    assert _snapshot(*watched) == before
    assert _WRITES == [], f"opened for writing during the uploads: {_WRITES}"


def test_nothing_is_left_in_the_engine_after_the_response(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("big.png", _five_megabyte_png(), "image/png")})
    assert r.status_code == 200
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert engine._in_flight == 0
    assert engine.queue_depth == 0
