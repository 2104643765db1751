"""`deepfake-api serve` on a socket (server.py): header size and header-read limits, malformed requests,
all answered as problem+json by the server itself."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.utils.server import free_port, serve, wait_ready


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
