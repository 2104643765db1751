"""How the service is served: uvicorn with the edges a proxy or a scanner finds closed.

- **Header limits**: the request line and headers may hold `max_header_bytes` (431 beyond) and must
  arrive within `header_timeout_s` of the connection opening or of a request's first byte (408 and
  the connection closed beyond). uvicorn's default parser (httptools) has neither; its h11 protocol
  has the size cap and is extended here with the timer. A silent connection is closed the same way.
- **Every answer the server itself gives is problem+json**: malformed requests (uvicorn's plain
  "Invalid HTTP request received.") and the two refusals above.
- **Forwarded headers** (X-Forwarded-For/-Proto) are trusted only from `forwarded_allow_ips`
  (none by default), not from any local peer.
- **Logs**: uvicorn's and every library's records go through the same JSON formatter as ours, with
  directories stripped; Python warnings (Pillow's among them) are logged, not printed with their path.
"""

from __future__ import annotations

import asyncio
import http
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from deepfake_api.config import Settings, get_settings
from deepfake_api.errors import DeepfakeError, HeadersTooLarge, HeaderTimeout, MalformedRequest
from deepfake_api.logs import LOG_FORMAT, LibraryRecords, PathlessJsonFormatter


def log_config(settings: Settings) -> dict[str, Any]:
    """dictConfig for uvicorn.run: uvicorn's loggers and the root (libraries) write JSON to stderr.
    The app's own `deepfake_api` logger has its queued handler (logs.configure_logging)."""
    formatter = {"()": PathlessJsonFormatter, "fmt": LOG_FORMAT} if settings.log_json else {"format": LOG_FORMAT}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
        "filters": ["libraries"],  # a consumer that cannot reach Redis: once per 10 s, no traceback
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"libraries": {"()": LibraryRecords}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": settings.log_level, "propagate": False},
            "uvicorn.error": {"level": settings.log_level},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def problem_bytes(error: DeepfakeError, *, close: bool = True) -> bytes:
    """A whole HTTP/1.1 response carrying `error` as problem+json, for answers the server gives
    before (or instead of) the app."""
    body = json.dumps(error.problem()).encode()
    head = [
        f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}",
        "content-type: application/problem+json",
        f"content-length: {len(body)}",
        "x-content-type-options: nosniff",
    ]
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read deadline and problem+json refusals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.header_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            pending = self.conn.trailing_data[0] + data  # at most max_header_bytes + one read
            end = pending.find(b"\r\n\r\n")
            if (end if end >= 0 else len(pending)) > self.max_header_bytes:
                self._refuse(HeadersTooLarge(f"The request line and headers exceed {self.max_header_bytes} bytes."))
                return
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._arm()  # between requests, or the headers are not all in: the deadline runs
        else:
            self._disarm()  # the headers are in; the body has the app's own upload timeout

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still being produced: the keep-alive rules apply after it
        if self.conn.trailing_data[0]:
            self._refuse(HeaderTimeout(f"The request headers did not arrive within {self.header_timeout_s:g} s."))
        else:
            self.transport.close()  # idle: nothing was asked, nothing to answer

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # the keep-alive timer covers the idle wait; the next first byte arms ours

    def send_400_response(self, msg: str) -> None:
        self.logger.info("malformed request refused", extra={"reason": msg})
        self._refuse(MalformedRequest("The request is not valid HTTP/1.1."))

    def _refuse(self, error: DeepfakeError) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(problem_bytes(error))
            self.transport.close()


M_MMAP_THRESHOLD = -3
HEAP_MMAP_THRESHOLD = 1024 * 1024


def bound_heap() -> bool:
    """Keep big buffers (upload bodies, decoded images) out of the heap: glibc serves allocations over
    a fixed 1 MiB from mmap and gives them back on free. By default the threshold rises to the size
    of the last big buffer freed (up to 32 MiB), so later 10 MB bodies came from the heap and left it
    fragmented: peak RSS reached the body budget twice over. Setting it fixes it. glibc only."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    trusted = settings.forwarded_allow_ips.strip()
    return {
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "ws": "none",
        "log_config": log_config(settings),
        "timeout_graceful_shutdown": 30,
        "access_log": False,  # the app logs one JSON line per request itself
        "server_header": False,
    }
