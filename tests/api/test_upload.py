"""Reading the upload: the size cap while streaming, the upload timeout, and every multipart oddity as a 4xx problem."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from deepfake_api.api.upload import MAX_PARTS
from tests.utils.apps import build_app, serving_async
from tests.utils.hostile import file_part, multipart
from tests.utils.images import jpeg_bytes
from tests.utils.problems import assert_problem
from tests.utils.server import free_port, serve, wait_ready

pytestmark = pytest.mark.anyio
LIMIT = 64 * 1024
CHUNK = 4 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Feed:
    """A request body that counts how much of it the server pulled."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), CHUNK):
            self.sent += len(self.data[i : i + CHUNK])
            yield self.data[i : i + CHUNK]


async def test_an_oversized_stream_is_refused_before_it_is_read_to_the_end() -> None:
    body, ctype = multipart([file_part(b"\xff\xd8\xff" + b"\0" * (4 * LIMIT))])
    feed = Feed(body)
    async with serving_async(build_app(max_upload_bytes=LIMIT)) as client:
        r = await client.post("/predict", content=feed, headers={"content-type": ctype})
    assert_problem(r, 413, "payload-too-large")
    assert str(LIMIT) in r.json()["detail"]
    assert LIMIT < feed.sent <= LIMIT + CHUNK, f"{feed.sent} of {len(body)} bytes were read"


async def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_read() -> None:
    body, ctype = multipart([file_part(b"\0" * (2 * LIMIT))])
    feed = Feed(body)
    headers = {"content-type": ctype, "content-length": str(len(body))}
    async with serving_async(build_app(max_upload_bytes=LIMIT)) as client:
        r = await client.post("/predict", content=feed, headers=headers)
    assert_problem(r, 413, "payload-too-large")
    assert feed.sent == 0


async def test_a_chunked_upload_under_the_limit_is_judged() -> None:
    body, ctype = multipart([file_part(jpeg_bytes(120, 120))])
    async with serving_async(build_app(max_upload_bytes=LIMIT)) as client:
        r = await client.post("/predict", content=Feed(body), headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "JPEG"


class SlowFeed(Feed):
    """A client trickling its upload: one chunk every `gap` seconds."""

    def __init__(self, data: bytes, gap: float) -> None:
        super().__init__(data)
        self.gap = gap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in super().__aiter__():
            await asyncio.sleep(self.gap)
            yield chunk


async def test_an_upload_that_trickles_in_past_the_upload_timeout_is_408_and_closes() -> None:
    body, ctype = multipart([file_part(jpeg_bytes(120, 120) + b"\0" * (20 * CHUNK))])
    feed = SlowFeed(body, gap=0.05)
    async with serving_async(build_app(upload_timeout_s=0.3)) as client:
        r = await client.post("/predict", content=feed, headers={"content-type": ctype})
    assert_problem(r, 408, "upload-timeout")
    assert r.headers["connection"] == "close"
    assert feed.sent < len(body), "the server waited for the whole body"


async def test_a_slow_upload_inside_the_upload_timeout_is_judged() -> None:
    body, ctype = multipart([file_part(jpeg_bytes(120, 120))])
    async with serving_async(build_app(upload_timeout_s=5)) as client:
        r = await client.post("/predict", content=SlowFeed(body, gap=0.02), headers={"content-type": ctype})
    assert r.status_code == 200, r.text


REAL_UPLOAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """`deepfake-api serve` on a real socket (uvicorn, not ASGI in-process), upload timeout 1 s."""
    port = free_port()
    proc = serve(port, env={"DEEPFAKE_UPLOAD_TIMEOUT_S": str(REAL_UPLOAD_TIMEOUT_S)})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_stalled_upload_gets_408_and_the_connection_is_closed_while_others_are_served(port: int) -> None:
    body, ctype = multipart([file_part(jpeg_bytes(200, 200))])
    head = f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(head.encode() + body[:200])  # ...and the rest never comes
        sent_at = time.monotonic()
        other = httpx.post(
            f"http://127.0.0.1:{port}/predict", files={"file": ("ok.jpg", jpeg_bytes(200, 200, seed=3))}, timeout=30
        )
        assert other.status_code == 200, other.text
        raw = b""
        while chunk := slow.recv(65536):  # b"" only when the server closes; a hang hits the 30 s timeout
            raw += chunk
        waited = time.monotonic() - sent_at
    head_part, _, payload = raw.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 408"), raw[:200]
    assert b"content-type: application/problem+json" in head_part.lower()
    assert b"connection: close" in head_part.lower()
    assert json.loads(payload)["type"].endswith("/upload-timeout")
    assert waited >= REAL_UPLOAD_TIMEOUT_S * 0.9


def test_an_eleven_megabyte_upload_is_413_with_the_default_limit(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("big.jpg", b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024))})
    body = assert_problem(r, 413, "payload-too-large")
    assert "10.0 MiB" in body["detail"]


def _raw(client: TestClient, body: bytes, ctype: str) -> httpx.Response:
    return client.post("/predict", content=body, headers={"content-type": ctype})


IMG = jpeg_bytes(96, 96)
BODY, CTYPE = multipart([file_part(IMG)])


@pytest.mark.parametrize(
    ("body", "ctype", "status", "slug"),
    [
        (BODY, "text/plain", 415, "unsupported-media-type"),
        (BODY, "application/json", 415, "unsupported-media-type"),
        (BODY, "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
        (BODY, "multipart/form-data", 415, "unsupported-media-type"),  # no boundary
        (BODY, "multipart/mixed; boundary=test-boundary-7MA4YWxk", 415, "unsupported-media-type"),
        (BODY, "", 415, "unsupported-media-type"),
        (b"", CTYPE, 400, "invalid-upload"),
        (b"hello world", CTYPE, 400, "invalid-upload"),
        (BODY.replace(b"\r\n", b"\n"), CTYPE, 400, "invalid-upload"),
        (BODY, "multipart/form-data; boundary=something-else", 400, "invalid-upload"),
        (BODY[: BODY.rindex(b"\r\n--")], CTYPE, 400, "invalid-upload"),  # no closing boundary
        (BODY[: len(BODY) // 2], CTYPE, 400, "invalid-upload"),  # cut in the middle of the file
        (
            multipart([file_part(IMG)], b"b" * 300)[0],
            "multipart/form-data; boundary=" + "b" * 300,
            400,
            "invalid-upload",
        ),
        (multipart([(b"Content-Disposition form-data", IMG)])[0], CTYPE, 400, "invalid-upload"),
        (multipart([(b"Content-Type: image/jpeg", IMG)])[0], CTYPE, 400, "invalid-upload"),
        (
            multipart([(b'Content-Disposition: form-data; filename="a.jpg"', IMG)])[0],
            CTYPE,
            400,
            "invalid-upload",
        ),
        (multipart([file_part(IMG, name="image")])[0], CTYPE, 400, "invalid-upload"),
        (multipart([file_part(IMG, name="FILE")])[0], CTYPE, 400, "invalid-upload"),
        (multipart([file_part(IMG), file_part(IMG)])[0], CTYPE, 400, "invalid-upload"),
        (multipart([file_part(b"")])[0], CTYPE, 400, "invalid-upload"),
        (b"--test-boundary-7MA4YWxk--\r\n", CTYPE, 400, "invalid-upload"),  # a form with no part
        (multipart([file_part(b"GIF89a-not-really")])[0], CTYPE, 422, "invalid-image"),
        (multipart([file_part(b"%PDF-1.7", ctype="image/jpeg")])[0], CTYPE, 415, "unsupported-media-type"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None,
)
def test_malformed_uploads_are_4xx_problems(
    client: TestClient, body: bytes, ctype: str, status: int, slug: str
) -> None:
    r = _raw(client, body, ctype)
    assert_problem(r, status, slug)
    assert "Traceback" not in r.text


def test_missing_field_names_the_fields_it_saw(client: TestClient) -> None:
    r = client.post("/predict", data={"photo": "x"}, files={"image": ("a.jpg", IMG, "image/jpeg")})
    body = assert_problem(r, 400, "invalid-upload")
    assert "'photo'" in body["detail"] and "'image'" in body["detail"]


def test_two_files_in_the_field_are_refused(client: TestClient) -> None:
    files = [("file", ("a.jpg", IMG, "image/jpeg")), ("file", ("b.jpg", IMG, "image/jpeg"))]
    body = assert_problem(client.post("/predict", files=files), 400, "invalid-upload")
    assert "exactly one" in body["detail"]


def test_a_form_with_too_many_parts_is_refused_without_parsing_it_all(client: TestClient) -> None:
    few = multipart([(b'Content-Disposition: form-data; name="x"', b"1")] * (MAX_PARTS - 1) + [file_part(IMG)])
    assert _raw(client, *few).status_code == 200
    tiny = [(b'Content-Disposition: form-data; name="x"', b"")] * 140_000
    body, ctype = multipart(tiny + [file_part(IMG)])
    assert len(body) < 10 * 1024 * 1024
    started = time.process_time()
    r = _raw(client, body, ctype)
    cpu = time.process_time() - started
    assert f"more than {MAX_PARTS} parts" in assert_problem(r, 400, "invalid-upload")["detail"]
    assert cpu < 1.0, f"{cpu:.2f} s of CPU to refuse it"


@pytest.mark.parametrize(
    "extra",
    [
        {"ctype": "text/plain"},
        {"ctype": "application/octet-stream"},
        {"ctype": "image/png"},  # says PNG, is a JPEG: the bytes decide
        {"filename": "../../etc/passwd"},
        {"filename": "ü€ 😀.jpg"},
        {"filename": ""},
    ],
)
def test_the_part_headers_do_not_decide_the_type(client: TestClient, extra: dict[str, str]) -> None:
    r = _raw(client, *multipart([file_part(IMG, **extra)]))
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "JPEG"


def test_a_plain_form_field_named_file_is_accepted(client: TestClient) -> None:
    r = _raw(client, *multipart([(b'Content-Disposition: form-data; name="file"', IMG)]))
    assert r.status_code == 200, r.text


def test_a_quoted_boundary_and_extra_parameters_are_accepted(client: TestClient) -> None:
    ctype = 'multipart/form-data; charset=utf-8; boundary="test-boundary-7MA4YWxk"'
    assert _raw(client, BODY, ctype).status_code == 200
