"""A memory budget for request bodies: bytes reserved across every request in flight in this worker.

A /predict (or batch) request reserves what its body may hold (its Content-Length, or the upload
limit when it does not say) *before* a byte of the body is read, and releases it when its response
is ready. When the reservation does not fit, the request is refused with 503 + Retry-After at once:
its body is read and discarded (never kept), so the client gets the answer rather than a reset
connection, and memory stays bounded whatever the concurrency and the body sizes. Everything here
runs on the event loop (no locks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from starlette.requests import ClientDisconnect, Request

from deepfake_api import metrics
from deepfake_api.errors import PayloadTooLarge, UploadBudgetFull


class BodyBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.peak = 0

    def fits(self, n: int) -> bool:
        return self.used + n <= self.limit

    def full(self, retry_after_s: int) -> UploadBudgetFull:
        metrics.REJECTED.labels("upload_budget").inc()
        return UploadBudgetFull(
            f"Uploads in progress hold this worker's body budget ({self.limit / 1048576:.0f} MiB); retry shortly.",
            headers={"Retry-After": str(retry_after_s)},
        )

    @contextmanager
    def hold(self, n: int, retry_after_s: int) -> Iterator[None]:
        """`n` bytes for the duration of the block, or UploadBudgetFull (503) when they do not fit."""
        if not self.fits(n):
            raise self.full(retry_after_s)
        self.used += n
        self.peak = max(self.peak, self.used)
        metrics.BODY_BYTES_RESERVED.set(self.used)
        try:
            yield
        finally:
            self.used -= n
            metrics.BODY_BYTES_RESERVED.set(self.used)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


@asynccontextmanager
async def reserve(
    request: Request, budget: BodyBudget, *, max_bytes: int, timeout_s: float, retry_after_s: int
) -> AsyncIterator[None]:
    """Hold this request's share of the budget for the block, or raise UploadBudgetFull (503) after
    the body has been discarded. A declared length over `max_bytes` is 413 before anything is read."""
    declared = declared_length(request)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"The upload exceeds the limit of {max_bytes} bytes ({max_bytes / 1048576:.1f} MiB).")
    need = declared if declared is not None else max_bytes
    if not budget.fits(need):
        full = budget.full(retry_after_s)
        if not await _discard(request, max_bytes, timeout_s):
            full.headers["Connection"] = "close"
        raise full
    with budget.hold(need, retry_after_s):  # no await since fits(): nothing else reserved meanwhile
        yield


async def _discard(request: Request, max_bytes: int, timeout_s: float) -> bool:
    """Read the body and drop it, so the refusal reaches a client that is still sending. False when
    it could not be read to its end (too long, too slow, gone): the connection is then closed."""
    seen = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > max_bytes:
                    return False
    except (TimeoutError, ClientDisconnect):
        return False
    return True
