"""Security defaults: optional API key, CORS allowlist, rate limit, headers, and logs without content."""

from __future__ import annotations

import base64
import io
import json
import logging
import os

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.jobs.conftest import redis_server
from tests.utils.apps import serving
from tests.utils.images import jpeg_bytes

KEY = "s3cret-Key_0123456789"
IMG = jpeg_bytes(64, 64)


def _post(client: TestClient, headers: dict[str, str] | None = None, data: bytes = IMG):  # type: ignore[no-untyped-def]
    return client.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")}, headers=headers or {})


def _assert_problem(r, status: int, slug: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/" + slug)


@pytest.fixture(scope="module")
def keyed() -> TestClient:
    with serving(api_key=KEY) as client:
        yield client


def test_without_a_configured_key_predict_is_open(client: TestClient) -> None:
    assert _post(client).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY + "x"}]
    + [{"X-API-Key": (KEY + "\u00e9").encode()}, {"x-api-key": KEY.lower()}],
    ids=["missing", "empty", "wrong", "prefix", "longer", "non-ascii", "wrong-case"],
)
def test_a_missing_or_wrong_key_is_401(keyed: TestClient, headers: dict) -> None:
    r = _post(keyed, headers)
    _assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "X-API-Key"
    assert KEY not in r.text


def test_the_right_key_is_200(keyed: TestClient) -> None:
    r = _post(keyed, {"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    assert _post(keyed, {"x-api-key": KEY}).status_code == 200  # header names are case-insensitive


@pytest.mark.parametrize("key", ["caf\u00e9", "tab\tkey", "new\nline", "\u20ac"])
def test_a_key_that_cannot_travel_in_a_header_fails_at_startup(key: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        make_settings(api_key=key)


def test_the_key_is_checked_before_the_body_is_read(keyed: TestClient) -> None:
    r = _post(keyed, data=b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024))
    _assert_problem(r, 401, "unauthorized")


def test_health_and_page_stay_open_with_a_key(keyed: TestClient) -> None:
    assert keyed.get("/health/live").status_code == 200
    assert keyed.get("/").status_code == 200


def test_no_cors_header_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    assert "access-control-allow-origin" not in _post(client, origin).headers
    preflight = client.options("/predict", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_an_allowed_origin_from_the_environment_gets_cors_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPFAKE_CORS_ORIGINS", '["https://app.example"]')
    assert make_settings().cors_origins == ["https://app.example"]
    with serving() as client:
        ok = client.options(
            "/predict",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        simple = _post(client, {"Origin": "https://app.example"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        other = _post(client, {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = client.options(
            "/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in refused.headers


def test_the_rate_limit_answers_429_with_retry_after() -> None:
    with serving(rate_limit="3/minute") as client:
        assert [_post(client).status_code for _ in range(3)] == [200, 200, 200]
        r = _post(client)
        _assert_problem(r, 429, "rate-limited")
        assert 1 <= int(r.headers["retry-after"]) <= 61
        assert client.get("/health").status_code == 200  # only /predict is limited


def test_polling_jobs_does_not_spend_the_image_quota(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 27 defect 1: each route class has its own bucket (a CLI polls a job every 0.5 s)."""
    with serving(jobs_dir=tmp_path, rate_limit="3/minute", rate_limit_jobs="5/minute") as client:
        polls = [client.get("/jobs/" + "0" * 32).status_code for _ in range(5)]
        assert polls == [404] * 5
        _assert_problem(client.get("/jobs/" + "0" * 32), 429, "rate-limited")  # the jobs bucket is spent
        assert [_post(client).status_code for _ in range(3)] == [200, 200, 200]  # the images' is whole
        _assert_problem(_post(client), 429, "rate-limited")


def test_with_redis_the_buckets_are_shared_by_the_replicas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with redis_server(tmp_path / "redis") as (url, _):
        limit = {
            "rate_limit_jobs": "4/minute",
            "jobs_backend": "redis",
            "redis_url": url,
            "jobs_embedded_worker": False,
        }
        with serving(jobs_dir=tmp_path / "a", **limit) as a, serving(jobs_dir=tmp_path / "b", **limit) as b:
            _two_replicas_share_one_bucket(a, b)


def _two_replicas_share_one_bucket(a: TestClient, b: TestClient) -> None:
    job = "/jobs/" + "1" * 32
    assert [a.get(job).status_code, b.get(job).status_code, a.get(job).status_code] == [404, 404, 404]
    assert b.get(job).status_code == 404
    _assert_problem(a.get(job), 429, "rate-limited")  # the fifth in the window, whichever replica
    _assert_problem(b.get(job), 429, "rate-limited")


def test_a_rate_limit_that_cannot_be_parsed_fails_at_startup() -> None:
    with pytest.raises(ValueError, match="rate_limit_jobs"):
        make_settings(rate_limit_jobs="often")


def test_the_page_sends_a_strict_csp_and_security_headers(client: TestClient) -> None:
    r = client.get("/")
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/predict", "/health", "/nope", "/openapi.json"])
def test_api_responses_carry_nosniff_and_a_request_id(client: TestClient, path: str) -> None:
    r = _post(client) if path == "/predict" else client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert len(r.headers["x-request-id"]) == 32


def test_access_logs_are_json_with_id_status_latency_and_size_but_no_content() -> None:
    marker = os.urandom(24)
    secret = b"SECRET-UPLOAD-" + marker.hex().encode()
    image = jpeg_bytes(96, 96, seed=5)
    stream = io.StringIO()
    with serving(log_json=True) as client:
        handler = client.app.state.log_handler  # type: ignore[attr-defined]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        responses = [
            _post(client, data=image),
            _post(client, data=secret),
            client.post("/predict", content=secret, headers={"content-type": "text/plain"}),
            _post(client, data=image[:300]),
        ]
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    access = [line for line in lines if line.get("message") == "request" and line.get("path") == "/predict"]
    assert [a["status"] for a in access] == [r.status_code for r in responses] == [200, 415, 415, 422]
    for entry, r in zip(access, responses, strict=True):
        assert entry["request_id"] == r.headers["x-request-id"]
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] >= 0
        assert entry["method"] == "POST" and entry["path"] == "/predict"
    # Bytes actually received: a non-multipart body is refused before it is read.
    assert [a["body_bytes"] > 0 for a in access] == [True, True, False, True]
    assert access[0]["image_bytes"] == len(image) and access[0]["image_format"] == "JPEG"
    text = stream.getvalue()
    for needle in (
        secret.decode(),
        marker.hex(),
        base64.b64encode(secret).decode(),
        base64.b64encode(image[:48]).decode(),
    ):
        assert needle not in text
    assert image[200:232].decode("latin-1") not in text
