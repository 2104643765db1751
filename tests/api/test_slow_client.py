"""Over a real socket (uvicorn, not ASGI in-process): a client trickling its upload gets a 408
problem and a closed connection, and other clients are served meanwhile."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.utils.hostile import file_part, multipart
from tests.utils.images import jpeg_bytes
from tests.utils.server import free_port, serve

UPLOAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    proc = serve(port, env={"DEEPFAKE_UPLOAD_TIMEOUT_S": str(UPLOAD_TIMEOUT_S)})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
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
    assert waited >= UPLOAD_TIMEOUT_S * 0.9
