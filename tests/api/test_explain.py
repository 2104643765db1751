"""`explain`, kinds and detector agreement through the real app and the committed model: the heatmap
of each judged face (grid, method, transform to the image), strict parameters, no-face and crowd
input, the batch and URL routes, and a kind head dropped beside a copy of the card."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deepfake_api import faces
from deepfake_api.app import create_app
from deepfake_api.detectors.encoder import GRID
from deepfake_api.model import DeepfakeModel
from tests.conftest import make_settings, wait_ready
from tests.test_explain_heads import KINDS, card_with_kind_head, kind_spec
from tests.utils.apps import serving
from tests.utils.faces import compose, face_jpeg, jpeg
from tests.utils.images import jpeg_bytes
from tests.utils.problems import assert_problem


def _post(client: TestClient, data: bytes, **params: str) -> dict[str, Any]:
    r = client.post("/predict", params=params, files={"file": ("photo.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def check_heatmap(face: dict[str, Any]) -> np.ndarray:
    """The heatmap of a judged face is a GRID x GRID grid in [0, 1] whose transform puts the crop's
    template landmarks on the face's landmarks in the image."""
    heat = face["heatmap"]
    grid = np.asarray(heat["grid"])
    assert grid.shape == (GRID, GRID) and grid.min() >= 0 and grid.max() <= 1
    assert heat["crop_size"] == faces.CROP_SIZE
    assert (grid.max() == 1.0) == (heat["max_contribution"] > 0)
    assert "no spatial map" in heat["method"] and "fusion weights" in heat["method"]
    matrix = np.asarray(heat["transform"])
    assert matrix.shape == (2, 3)
    mapped = np.c_[faces.TEMPLATE, np.ones(5)] @ matrix.T
    # the similarity is a least-squares fit of 5 points: within a few pixels of each landmark
    size = max(face["box"]["width"], face["box"]["height"])
    assert np.abs(mapped - np.asarray(face["landmarks"])).max() < 0.15 * size
    return grid


def test_explain_gives_each_judged_face_a_heatmap_and_leaves_the_scores_alone(client: TestClient) -> None:
    data = face_jpeg(0)
    plain = _post(client, data)
    explained = _post(client, data, explain="true")
    assert [f["score"] for f in plain["faces"]] == [f["score"] for f in explained["faces"]]
    assert plain["label"] == explained["label"]
    judged = [f for f in explained["faces"] if f["status"] == "judged"]
    assert judged
    for face in judged:
        check_heatmap(face)
        assert face["agreement"]["status"] in ("agree", "disagree")
        # the committed card has a kind head: a kind for every face not judged real, none for a real one
        if face["label"] == "real":
            assert face["kind"] is None
        else:
            names = [k["name"] for k in face["kind"]["probabilities"]]
            assert face["kind"]["name"] in (*names, "unknown")
            assert sum(k["probability"] for k in face["kind"]["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert all(f["heatmap"] is None for f in plain["faces"])
    assert all(f["agreement"] is not None for f in plain["faces"] if f["status"] == "judged")


@pytest.mark.parametrize("value", ["maybe", "2", ""])
@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
def test_explain_is_a_strict_boolean(client: TestClient, route: str, value: str) -> None:
    r = client.post(route, params={"explain": value}, files={"file": ("a.jpg", face_jpeg(0), "image/jpeg")})
    problem = assert_problem(r, 422, "validation-error")
    assert "explain" in str(problem.get("errors"))


def test_explain_on_the_url_route_is_strict_too(client: TestClient) -> None:
    r = client.post("/predict/url", params={"explain": "maybe"}, json={"url": "https://example.com/a.jpg"})
    assert_problem(r, 422, "validation-error")


# A misspelt or miscased option would otherwise be ignored: a plain answer to a client that asked
# for a heatmap or a report, with nothing to say why (schemathesis's negative cases send such keys).
@pytest.mark.parametrize("query", ["explian=true", "Explain=true", "report=true&reprot=1", "=false", "x"])
@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
def test_an_unknown_query_parameter_is_refused(client: TestClient, route: str, query: str) -> None:
    r = client.post(f"{route}?{query}", files={"file": ("a.jpg", face_jpeg(0), "image/jpeg")})
    problem = assert_problem(r, 422, "validation-error")
    unknown = query.split("&")[-1].split("=")[0]
    assert ["query", unknown] in [e["loc"] for e in problem["errors"]], problem


def test_an_unknown_query_parameter_is_refused_on_the_url_route(client: TestClient) -> None:
    r = client.post("/predict/url?explain=true&explian=true", json={"url": "https://example.com/a.jpg"})
    problem = assert_problem(r, 422, "validation-error")
    assert problem["errors"] == [{"loc": ["query", "explian"], "msg": "Extra inputs are not permitted"}]


def test_explain_on_an_image_without_a_face_is_the_same_no_face_answer(client: TestClient) -> None:
    data = jpeg_bytes(640, 480, seed=9)
    plain, explained = _post(client, data), _post(client, data, explain="true")
    assert explained["label"] == plain["label"] == "no_face"
    assert explained["score"] is None and explained["faces"] == plain["faces"] == []


def test_in_a_crowd_only_judged_faces_get_a_heatmap() -> None:
    img, _ = compose((1600, 500), [(60 + 300 * i, 100) for i in range(5)])
    with serving(max_faces=2) as client:
        body = _post(client, jpeg(img), explain="1")
    for face in body["faces"]:
        if face["status"] == "judged":
            check_heatmap(face)
        else:
            assert face["heatmap"] is None and face["agreement"] is None and face["kind"] is None
    assert [f["status"] for f in body["faces"]].count("judged") == 2


def test_too_small_faces_get_no_heatmap(client: TestClient) -> None:
    img, _ = compose((400, 300), [(150, 100)], tile_scale=0.4)
    body = _post(client, jpeg(img), explain="true")
    assert body["label"] == "no_face" and all(f["heatmap"] is None for f in body["faces"])


def test_batch_explains_every_file_and_keeps_bad_files_their_problem(client: TestClient) -> None:
    files = [
        ("file", ("a.jpg", face_jpeg(1), "image/jpeg")),
        ("file", ("b.txt", b"not an image", "text/plain")),
        ("file", ("c.jpg", face_jpeg(2), "image/jpeg")),
    ]
    r = client.post("/predict/batch", params={"explain": "true"}, files=files)
    assert r.status_code == 200, r.text
    slots = r.json()["results"]
    assert slots[1]["status"] == 415 and slots[1]["prediction"] is None
    for slot in (slots[0], slots[2]):
        judged = [f for f in slot["prediction"]["faces"] if f["status"] == "judged"]
        assert judged and all(check_heatmap(f) is not None for f in judged)


def test_url_route_explains_a_fetched_image() -> None:
    with serving() as client:
        data = face_jpeg(3)

        async def fetch(url: str) -> SimpleNamespace:
            return SimpleNamespace(data=data)

        client.app.state.fetcher.fetch = fetch  # type: ignore[attr-defined]
        r = client.post("/predict/url", params={"explain": "true"}, json={"url": "https://faces.example/a.jpg"})
        assert r.status_code == 200, r.text
        judged = [f for f in r.json()["faces"] if f["status"] == "judged"]
        assert judged and all(check_heatmap(f) is not None for f in judged)
        r = client.post("/predict/url", json={"urls": ["https://faces.example/a.jpg"]}, params={"explain": "true"})
        assert r.status_code == 200 and r.json()["results"][0]["prediction"]["faces"][0]["heatmap"] is not None


def test_a_kind_head_beside_the_card_names_kinds_for_faces_not_judged_real(tmp_path: Path) -> None:
    """The lead's `face-kind.json` format on a copy of the card: every judged face that is not labelled
    real gets a kind (a name it knows, or `unknown`) and the probabilities of all; real faces none."""
    card = card_with_kind_head(tmp_path, kind_spec(["l11_cls", "l9_mean"], 768, unknown_below=0.3))
    model = DeepfakeModel(card)
    with TestClient(create_app(make_settings(model_path=card), model=model)) as client:
        wait_ready(client)
        assert model.kind_head is not None and model.kind_head.kinds == tuple(KINDS)
        seen = []
        for i in range(4):
            for face in _post(client, face_jpeg(i), explain="true")["faces"]:
                if face["status"] != "judged":
                    continue
                seen.append(face["label"])
                if face["label"] == "real":
                    assert face["kind"] is None
                    continue
                kind = face["kind"]
                probs = {k["name"]: k["probability"] for k in kind["probabilities"]}
                assert set(probs) == set(KINDS) and sum(probs.values()) == pytest.approx(1, abs=1e-4)
                assert kind["probability"] == max(probs.values())
                assert kind["name"] in (*KINDS, "unknown")
                assert (kind["name"] == "unknown") == (kind["probability"] < 0.3)
        assert seen
