"""POST /predict through the real app, real detector, encoder and heads: one entry per face, the
image's verdict is its most-fake face, `no_face` when none can be judged, the per-image cap."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.conftest import MODEL_PATH
from tests.utils.apps import serving
from tests.utils.faces import compose, jpeg
from tests.utils.images import jpeg_bytes


def _post(client: TestClient, data: bytes) -> dict[str, object]:
    r = client.post("/predict", files={"file": ("photo.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_every_face_of_a_group_photo_is_found_judged_and_placed(client: TestClient) -> None:
    img, rects = compose((2400, 1600), [(200, 200), (1100, 700), (1900, 1200)], tile_scale=1.2)
    body = _post(client, jpeg(img))
    faces = body["faces"]
    assert isinstance(faces, list) and len(faces) == 3
    card = json.loads(MODEL_PATH.read_text())
    names = [d["name"] for d in card["detectors"]]
    for face, rect in zip(sorted(faces, key=lambda f: f["box"]["x"]), rects, strict=True):
        box = face["box"]
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        assert rect[0] <= cx <= rect[0] + rect[2] and rect[1] <= cy <= rect[1] + rect[3]
        assert face["status"] == "judged" and len(face["landmarks"]) == 5
        assert 0 <= face["score"] <= 1 and face["label"] in ("real", "fake", "uncertain")
        assert [d["name"] for d in face["detectors"]] == names
    top = max(faces, key=lambda f: f["score"])
    assert body["score"] == top["score"] and body["label"] == top["label"]
    assert [d["name"] for d in body["detectors"]] == names
    assert body["schema_version"] == "2"


def test_an_image_without_a_face_is_no_face_with_no_score(client: TestClient) -> None:
    body = _post(client, jpeg_bytes(640, 480, seed=9))
    assert body["label"] == "no_face" and body["score"] is None and body["faces"] == []


def test_faces_beyond_max_faces_are_listed_as_not_judged() -> None:
    img, _ = compose((1600, 500), [(60 + 300 * i, 100) for i in range(5)])
    with serving(max_faces=2) as client:
        body = _post(client, jpeg(img))
    statuses = [f["status"] for f in body["faces"]]  # type: ignore[attr-defined]
    assert statuses.count("judged") == 2 and statuses.count("not_judged") == 3
    assert all(f["score"] is None for f in body["faces"] if f["status"] == "not_judged")  # type: ignore[attr-defined]


def test_only_too_small_faces_give_no_face_and_say_so(client: TestClient) -> None:
    img, _ = compose((400, 300), [(150, 100)], tile_scale=0.4)
    body = _post(client, jpeg(img))
    assert body["label"] == "no_face" and body["score"] is None
    assert body["faces"] and all(f["status"] == "too_small" for f in body["faces"])  # type: ignore[attr-defined]


def test_a_40_megapixel_crowd_is_judged_within_the_cap() -> None:
    places = [(150 + 1000 * (i % 7), 200 + 1100 * (i // 7)) for i in range(35)]
    img, _ = compose((7300, 5400), places, tile_scale=2.0)
    with serving(max_faces=3, max_upload_bytes=64 * 1024 * 1024) as client:
        body = _post(client, jpeg(img))
    statuses = [f["status"] for f in body["faces"]]  # type: ignore[attr-defined]
    assert statuses.count("judged") == 3 and len(statuses) >= 30
    assert body["image"] == {  # type: ignore[comparison-overlap]
        "width": 7300,
        "height": 5400,
        "format": "JPEG",
        "oriented_width": 7300,
        "oriented_height": 5400,
    }
