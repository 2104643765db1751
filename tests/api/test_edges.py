"""The edges a proxy or a scanner finds: the body budget, Host-header redirects, HEAD, CORS refusals,
the schema's image constraints, and (against `deepfake-api serve` on a socket) header size and
header-read limits and malformed requests, all answered as problem+json."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.utils.apps import build_app, serving, serving_async
from tests.utils.faces import face_jpeg
from tests.utils.hostile import file_part, multipart
from tests.utils.problems import assert_problem
from tests.utils.server import free_port, serve, wait_ready

UPLOAD_LIMIT = 256 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeldBody:
    """A request body that sends its first chunk, then waits until released."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[:1024]
        self.started.set()
        await self.release.wait()
        yield self.data[1024:]


@pytest.mark.anyio
async def test_a_body_that_does_not_fit_the_budget_is_refused_before_it_is_kept(dataset_dir: object) -> None:
    """Budget = one upload: a second upload while the first is held gets 503 + Retry-After at once
    (its body read and dropped), and the first is still judged once it arrives."""
    image = face_jpeg()
    body, ctype = multipart([file_part(image)])
    app = build_app(max_upload_bytes=UPLOAD_LIMIT, max_batch_bytes=UPLOAD_LIMIT, body_budget_bytes=UPLOAD_LIMIT)
    async with serving_async(app) as client:
        held = HeldBody(body)
        first = asyncio.create_task(
            client.post("/predict", content=held, headers={"content-type": ctype})  # no length: reserves the limit
        )
        await asyncio.wait_for(held.started.wait(), 30)
        assert app.state.body_budget.used == UPLOAD_LIMIT
        second = await client.post("/predict", content=body, headers={"content-type": ctype})
        problem = assert_problem(second, 503, "upload-capacity")
        assert second.headers["retry-after"] == "1"
        assert "budget" in problem["detail"]
        held.release.set()
        r = await asyncio.wait_for(first, 60)
        assert r.status_code == 200, r.text
        assert r.json()["faces"], r.json()
        assert app.state.body_budget.used == 0
        third = await client.post("/predict", content=body, headers={"content-type": ctype})
        assert third.status_code == 200, third.text
        assert app.state.body_budget.peak == UPLOAD_LIMIT


def test_the_default_budget_follows_the_memory_limit() -> None:
    from deepfake_api.config import BODY_BUDGET_CAP, Settings, memory_limit

    limit = memory_limit()
    assert limit is not None and limit > 0
    s = Settings(workers=2)
    assert s.body_budget_bytes == max(s.max_upload_bytes, s.max_batch_bytes, min(BODY_BUDGET_CAP, limit // 4 // 2))


def test_the_budget_always_fits_one_upload() -> None:
    from deepfake_api.config import Settings

    s = Settings(body_budget_bytes=1024, max_upload_bytes=4096, max_batch_bytes=8192)
    assert s.body_budget_bytes == 8192


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


def test_the_schema_says_what_a_valid_image_is(app_client: TestClient) -> None:
    settings = app_client.app.state.settings  # type: ignore[attr-defined]
    body = app_client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    part = body["content"]["multipart/form-data"]
    file_schema = part["schema"]["properties"]["file"]
    assert file_schema["x-image"]["min_side"] == settings.min_side
    assert file_schema["x-image"]["max_pixels"] == settings.max_pixels
    assert file_schema["maxLength"] == settings.max_upload_bytes
    assert f"{settings.min_side}" in file_schema["description"]
    assert "image/jpeg" in part["encoding"]["file"]["contentType"]


# --- against the real server on a socket ----------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = serve(port, env={"DEEPFAKE_HEADER_TIMEOUT_S": "1.5", "DEEPFAKE_MAX_HEADER_BYTES": "8192"})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _exchange(addr: tuple[str, int], data: bytes, *, wait: float = 10.0) -> tuple[bytes, float]:
    """Send `data`, read until the server closes: (everything it sent, seconds until closed)."""
    started = time.monotonic()
    with socket.create_connection(addr, timeout=wait) as s:
        if data:
            s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out, time.monotonic() - started


def _raw_problem(raw: bytes, status: int, slug: str) -> dict[str, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), raw[:300]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/problem+json"
    problem: dict[str, object] = json.loads(body)
    assert str(problem["type"]).endswith("/" + slug) and problem["status"] == status
    return problem


def test_headers_over_the_limit_are_a_431_problem(served: tuple[str, int]) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    raw, _ = _exchange(served, request)
    _raw_problem(raw, 431, "headers-too-large")
    # One right after is served: the refusal cost the server nothing lasting.
    assert httpx.get(f"http://{served[0]}:{served[1]}/health/live").status_code == 200


def test_headers_sent_too_slowly_are_a_408_problem_and_closed(served: tuple[str, int]) -> None:
    raw, took = _exchange(served, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
    _raw_problem(raw, 408, "header-timeout")
    assert took < 8, f"held {took:.1f} s"


def test_a_connection_that_sends_nothing_is_closed(served: tuple[str, int]) -> None:
    raw, took = _exchange(served, b"")
    assert raw == b"" and took < 8, f"held {took:.1f} s"


def test_a_malformed_request_is_a_400_problem(served: tuple[str, int]) -> None:
    raw, _ = _exchange(served, b"NOT HTTP AT ALL\r\n\r\n")
    _raw_problem(raw, 400, "malformed-request")


def test_keep_alive_requests_are_not_cut_by_the_header_timer(served: tuple[str, int]) -> None:
    with httpx.Client(base_url=f"http://{served[0]}:{served[1]}") as client:
        for _ in range(3):
            assert client.get("/health/live").status_code == 200
            time.sleep(1.0)  # under the keep-alive (5 s); the header timer (1.5 s) must not fire mid-idle
        assert client.get("/health/live").status_code == 200
