"""Images by URL (fetch.py, through POST /predict/url): the real fetch code against a real HTTP server on
127.0.0.1 started here; host names resolve through a stub resolver handed to the app (the boundary)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from tests.conftest import make_settings, wait_ready
from tests.utils.apps import serving, shared_model
from tests.utils.faces import face_jpeg
from tests.utils.problems import assert_problem


def _slot_problem(slot: dict[str, Any], status: int, slug: str) -> None:
    assert slot["status"] == status, slot
    assert slot["prediction"] is None
    assert slot["problem"]["type"].endswith("/" + slug), slot
    assert slot["problem"]["status"] == status and slot["problem"]["detail"]


# --- by URL ---------------------------------------------------------------------------------

IMAGE = face_jpeg(0)


class _Handler(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hosts.append(self.headers.get("Host", ""))
        path, _, query = self.path.partition("?")
        if path == "/face.jpg":
            self._send(200, IMAGE, "image/jpeg")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            time.sleep(3)
            self._send(200, IMAGE, "image/jpeg")
        elif path == "/huge":  # no length: the cap must stop the stream
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                self.wfile.write(b"\xff\xd8\xff")
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(50_000_000))
            self.end_headers()
        elif path == "/text":
            self._send(200, b"<html>not an image</html>", "image/jpeg")
        else:
            self._send(404, b"nope", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class StubResolver:
    """Host names of this test → addresses; records every lookup."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


NAMES = {
    "faces.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
    "evil.test": ["127.0.0.1"],
    "intranet.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "192.168.1.20"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "ula.test": ["fd00::1"],
    "cgnat.test": ["100.64.1.1"],
}


@pytest.fixture
def url_app() -> Iterator[tuple[TestClient, StubResolver]]:
    yield from _url_client()


def _url_client(**overrides: object) -> Iterator[tuple[TestClient, StubResolver]]:
    resolver = StubResolver(NAMES)
    app = create_app(make_settings(**overrides), model=shared_model(), resolve=resolver)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, resolver


@pytest.fixture
def allowed_app() -> Iterator[tuple[TestClient, StubResolver]]:
    yield from _url_client(
        url_allow_hosts=["faces.test", "other.test", "127.0.0.1"], url_timeout_s=1.5, max_upload_bytes=256 * 1024
    )


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:{port}/face.jpg", "loopback"),
        ("http://localhost/face.jpg", "no such host"),
        ("http://evil.test/face.jpg", "loopback"),
        ("http://intranet.test/face.jpg", "private"),
        ("http://metadata.test/latest/meta-data", "link-local"),
        ("http://mixed.test/face.jpg", "192.168.1.20"),
        ("http://mapped.test/face.jpg", "private address (as IPv6"),
        ("http://ula.test/face.jpg", "private"),
        ("http://cgnat.test/face.jpg", "shared"),
        ("http://[::1]/face.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/face.jpg", "loopback"),
        ("http://0.0.0.0/face.jpg", "unspecified"),
        ("http://224.0.0.1/face.jpg", "multicast"),
        ("http://240.0.0.1/face.jpg", "reserved"),
    ],
)
def test_private_and_special_addresses_are_refused_by_default(
    url_app: tuple[TestClient, StubResolver], origin: int, url: str, why: str
) -> None:
    client, _ = url_app
    r = client.post("/predict/url", json={"url": url.format(port=origin)})
    if why == "no such host":
        assert_problem(r, 422, "url-unreachable")
        return
    problem = assert_problem(r, 403, "url-forbidden")
    assert why in problem["detail"], problem


@pytest.mark.parametrize(
    "url, status, slug",
    [
        ("ftp://faces.test/face.jpg", 422, "validation-error"),  # the schema says http(s)://
        ("file:///etc/passwd", 422, "validation-error"),
        ("http://[::1/face.jpg", 422, "url-invalid"),
        ("http://user:pw@faces.test/face.jpg", 422, "url-invalid"),
        ("http://faces.test:22/face.jpg", 403, "url-forbidden"),
        ("not a url", 422, "validation-error"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused(
    url_app: tuple[TestClient, StubResolver], url: str, status: int, slug: str
) -> None:
    assert_problem(url_app[0].post("/predict/url", json={"url": url}), status, slug)


def test_an_allowed_host_is_fetched_from_the_address_checked_with_its_name_kept(
    allowed_app: tuple[TestClient, StubResolver], origin: int
) -> None:
    client, resolver = allowed_app
    _Handler.hosts.clear()
    r = client.post("/predict/url", json={"url": f"http://faces.test:{origin}/face.jpg"})
    assert r.status_code == 200, r.text
    alone = client.post("/predict", files={"file": ("f.jpg", IMAGE)}).json()
    assert r.json()["score"] == pytest.approx(alone["score"], abs=1e-6)
    assert resolver.lookups == ["faces.test"]  # resolved once; the connection went to that address
    assert _Handler.hosts == [f"faces.test:{origin}"]


def test_the_allow_list_admits_a_local_server_the_default_refuses(origin: int) -> None:
    url = f"http://127.0.0.1:{origin}/face.jpg"
    with serving() as client:
        assert_problem(client.post("/predict/url", json={"url": url}), 403, "url-forbidden")
    with serving(url_allow_hosts=["127.0.0.1"]) as client:
        assert client.post("/predict/url", json={"url": url}).status_code == 200


def test_every_redirect_hop_is_checked_again(allowed_app: tuple[TestClient, StubResolver], origin: int) -> None:
    client, resolver = allowed_app
    hop = f"http://faces.test:{origin}/redirect?http://other.test:{origin}/face.jpg"
    r = client.post("/predict/url", json={"url": hop})
    assert r.status_code == 200, r.text
    assert resolver.lookups == ["faces.test", "other.test"]
    for target, why in [
        ("http://evil.test/face.jpg", "not on this service's allow list"),
        ("http://10.0.0.7/face.jpg", "not on this service's allow list"),
        ("http://169.254.169.254/latest/meta-data/", "not on this service's allow list"),
        ("file:///etc/passwd", "Only http and https"),
    ]:
        r = client.post("/predict/url", json={"url": f"http://faces.test:{origin}/redirect?{target}"})
        assert why in r.json()["detail"], r.text
        assert r.status_code in (403, 422)


def test_a_redirect_from_an_allowed_server_to_a_private_address_is_refused(origin: int) -> None:
    """The allow list admits the local server itself, not where it redirects: a 302 to a name that
    resolves to 10.x is refused at that hop."""
    gen = _url_client(url_allow_hosts=["127.0.0.1"])
    client, _ = next(gen)
    try:
        r = client.post("/predict/url", json={"url": f"http://127.0.0.1:{origin}/redirect?http://intranet.test/x.jpg"})
        assert_problem(r, 403, "url-forbidden")
    finally:
        gen.close()


def test_fetch_limits_time_size_redirects_and_content(
    allowed_app: tuple[TestClient, StubResolver], origin: int
) -> None:
    client, _ = allowed_app
    base = f"http://faces.test:{origin}"
    started = time.monotonic()
    assert_problem(client.post("/predict/url", json={"url": base + "/slow"}), 422, "url-timeout")
    assert time.monotonic() - started < 3
    assert_problem(client.post("/predict/url", json={"url": base + "/huge"}), 413, "url-too-large")
    assert_problem(client.post("/predict/url", json={"url": base + "/declared-huge"}), 413, "url-too-large")
    assert_problem(client.post("/predict/url", json={"url": base + "/loop"}), 422, "url-unreachable")
    assert_problem(client.post("/predict/url", json={"url": base + "/text"}), 415, "url-not-an-image")
    assert_problem(client.post("/predict/url", json={"url": base + "/missing"}), 422, "url-unreachable")
    closed = f"http://127.0.0.1:{_closed_port()}/face.jpg"
    assert_problem(client.post("/predict/url", json={"url": closed}), 422, "url-unreachable")


def test_deny_list_wins(origin: int) -> None:
    gen = _url_client(url_allow_hosts=["faces.test"], url_deny_hosts=[".test"])
    client, _ = next(gen)
    try:
        r = client.post("/predict/url", json={"url": f"http://faces.test:{origin}/face.jpg"})
        assert "deny list" in assert_problem(r, 403, "url-forbidden")["detail"]
    finally:
        gen.close()


def test_a_list_of_urls_gets_one_result_per_url(allowed_app: tuple[TestClient, StubResolver], origin: int) -> None:
    client, _ = allowed_app
    urls = [f"http://faces.test:{origin}/face.jpg", "http://intranet.test/x.jpg", f"http://faces.test:{origin}/text"]
    r = client.post("/predict/url", json={"urls": urls})
    assert r.status_code == 200, r.text
    slots = r.json()["results"]
    assert [s["url"] for s in slots] == urls
    assert slots[0]["status"] == 200 and slots[0]["prediction"]["faces"]
    _slot_problem(slots[1], 403, "url-forbidden")
    _slot_problem(slots[2], 415, "url-not-an-image")


def test_a_url_body_must_name_exactly_one_of_url_or_urls(url_app: tuple[TestClient, StubResolver]) -> None:
    client, _ = url_app
    for body in ({}, {"url": "http://a.test/x", "urls": ["http://a.test/y"]}, {"urls": []}):
        assert_problem(client.post("/predict/url", json=body), 422, "validation-error")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
