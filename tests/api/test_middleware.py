"""The app-level edges: no Host-header redirects, HEAD on every GET route, CORS refusals as problems."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.utils.apps import serving
from tests.utils.problems import assert_problem


@pytest.fixture(scope="module")
def app_client() -> Iterator[TestClient]:
    with serving() as client:
        yield client


@pytest.mark.parametrize("path", ["/health/", "/health/ready/", "/metrics/", "/docs/"])
def test_no_redirect_is_built_from_the_host_header(app_client: TestClient, path: str) -> None:
    r = app_client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert "location" not in r.headers
    assert_problem(r, 404, "not-found")


def test_a_post_to_a_slashed_path_is_not_redirected_elsewhere(app_client: TestClient) -> None:
    files = {"file": ("a.jpg", b"\xff\xd8\xff")}
    r = app_client.post("/predict/", files=files, headers={"Host": "evil.example"}, follow_redirects=False)
    assert "location" not in r.headers
    assert r.status_code in (404, 405)
    assert r.headers["content-type"] == "application/problem+json"


GET_ROUTES = ["/", "/health", "/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_answers_every_get_route_with_its_headers_and_no_body(app_client: TestClient, path: str) -> None:
    get = app_client.get(path)
    head = app_client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"] or path == "/metrics"


def test_head_on_a_post_route_is_a_405_problem(app_client: TestClient) -> None:
    r = app_client.head("/predict")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


def test_a_refused_cors_preflight_is_problem_json() -> None:
    with serving(cors_origins=["https://allowed.example"]) as client:
        ok = client.options(
            "/predict",
            headers={"Origin": "https://allowed.example", "Access-Control-Request-Method": "POST"},
        )
        assert ok.status_code == 200
        r = client.options(
            "/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/cors-refused") and "origin" in body["detail"].lower()
