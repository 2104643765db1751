"""POST /predict/batch (api/batch.py): one outcome per file, in order, through the real app."""

from __future__ import annotations

from typing import Any

import pytest

from tests.utils.apps import serving
from tests.utils.faces import face_jpeg
from tests.utils.problems import assert_problem


def _slot_problem(slot: dict[str, Any], status: int, slug: str) -> None:
    assert slot["status"] == status, slot
    assert slot["prediction"] is None
    assert slot["problem"]["type"].endswith("/" + slug), slot
    assert slot["problem"]["status"] == status and slot["problem"]["detail"]


# --- batch ----------------------------------------------------------------------------------


def test_a_batch_returns_each_files_own_outcome_in_order() -> None:
    files = [
        ("file", ("face0.jpg", face_jpeg(0), "image/jpeg")),
        ("file", ("corrupt.jpg", face_jpeg(1)[:300], "image/jpeg")),
        ("file", ("notes.txt", b"not an image at all\n" * 10, "text/plain")),
        ("file", ("big.jpg", face_jpeg(2) + b"\0" * 70_000, "image/jpeg")),
        ("file", ("empty.jpg", b"", "image/jpeg")),
        ("file", ("face3.jpg", face_jpeg(3), "image/jpeg")),
    ]
    with serving(max_upload_bytes=64 * 1024) as client:
        single = client.post("/predict", files={"file": files[0][1]}).json()
        r = client.post("/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    slots = body["results"]
    assert [s["index"] for s in slots] == list(range(6))
    assert [s["filename"] for s in slots] == [f[1][0] for f in files]
    assert slots[0]["status"] == 200 and slots[5]["status"] == 200
    # The same image judged alone and in a batch gets the same verdict.
    assert slots[0]["prediction"]["score"] == pytest.approx(single["score"], abs=1e-6)
    assert slots[0]["prediction"]["faces"][0]["box"] == single["faces"][0]["box"]
    _slot_problem(slots[1], 422, "invalid-image")
    _slot_problem(slots[2], 415, "unsupported-media-type")
    _slot_problem(slots[3], 413, "payload-too-large")
    _slot_problem(slots[4], 400, "invalid-upload")
    assert body["request_id"] == r.headers["x-request-id"]


def test_a_bad_batch_request_is_a_4xx_as_a_whole() -> None:
    with serving(max_batch_files=2, max_batch_bytes=200_000) as client:
        none = client.post("/predict/batch", files={"other": ("a.jpg", face_jpeg(0))})
        assert_problem(none, 400, "invalid-upload")
        many = client.post("/predict/batch", files=[("file", (f"{i}.jpg", face_jpeg(i))) for i in range(3)])
        assert "at most 2 files" in assert_problem(many, 400, "invalid-upload")["detail"]
        huge = client.post("/predict/batch", files=[("file", ("a.jpg", b"\xff\xd8\xff" + b"\0" * 300_000))])
        assert_problem(huge, 413, "payload-too-large")
        text = client.post("/predict/batch", content=b"{}", headers={"content-type": "application/json"})
        assert_problem(text, 415, "unsupported-media-type")
