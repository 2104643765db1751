"""Real receivers started by the tests: an HTTP server that answers as told (and records what it
got), an SMTP server (aiosmtpd) that keeps the messages; and an image the served model calls fake."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from tests.jobs.conftest import judged_tile
from tests.utils.apps import serving
from tests.utils.server import free_port

T = TypeVar("T")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "test-key-123"


def _wait(arrived: threading.Condition, items: list[T], n: int, timeout: float, who: str) -> list[T]:
    """Until `items` (appended under `arrived`) holds n, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with arrived:
        while len(items) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"{who} got {len(items)} of {n}"
            arrived.wait(left)
    return list(items)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Answers each POST with the next of `statuses` (the last one repeats); `hold` makes it wait
    (for `release`, or for ever) before answering."""

    url: str = ""
    statuses: list[int] = field(default_factory=lambda: [200])
    hold: bool = False
    got: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 60) -> list[Received]:
        return _wait(self.arrived, self.got, n, timeout, "the receiver")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.arrived:
                rec.got.append(Received({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                n = len(rec.got)
                rec.arrived.notify_all()
            if rec.hold:
                rec.release.wait(30)
            status = rec.statuses[min(n, len(rec.statuses)) - 1]
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        with self.arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))  # type: ignore[attr-defined]
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, n: int, timeout: float = 60) -> list[tuple[str, list[str], bytes]]:
        return _wait(self.arrived, self.messages, n, timeout, "the SMTP server")


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def fake_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An image the served model labels fake (chosen through /predict itself)."""
    with serving(jobs_dir=tmp_path_factory.mktemp("pick")) as client:
        tile = judged_tile(client, "fake", ("stylegan3", "celebahq-pairs", "sd-portraits"))
    buf = io.BytesIO()
    tile.save(buf, "PNG")
    return buf.getvalue()


def predict(client: TestClient, png: bytes) -> dict:
    r = client.post("/predict", files={"file": ("face.png", png)}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    return r.json()


def wait_delivery(client: TestClient, sub_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/subscriptions/{sub_id}/deliveries", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200, r.text
        found = [d for d in r.json()["deliveries"] if d["status"] == status]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {status} delivery for {sub_id}: {r.json()}")
