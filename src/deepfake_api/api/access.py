"""Who may call what, as router dependencies per route class (images, jobs, subscriptions): the
API key, then the client's rate limit in that class's own bucket. A router declares its class
once (`dependencies=[Depends(IMAGES)]`), so a new route cannot forget the checks, and polling a
job never spends the image quota. Buckets live in Redis when the job queue does (shared by every
replica), in memory otherwise. Async on purpose: a sync dependency costs a thread hop per request.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Literal

from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from deepfake_api.config import Settings
from deepfake_api.errors import RateLimited, SubscriptionsDisabled, Unauthorized

log = logging.getLogger("deepfake_api.access")
RouteClass = Literal["images", "jobs", "subscriptions"]


class RateLimits:
    """One moving-window bucket per (route class, client)."""

    def __init__(self, specs: dict[RouteClass, str], storage_uri: str = "memory://") -> None:
        self.items: dict[RouteClass, RateLimitItem] = {k: parse(v) for k, v in specs.items() if v}
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri)) if self.items else None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        specs: dict[RouteClass, str] = {
            "images": settings.rate_limit,
            "jobs": settings.rate_limit_jobs,
            "subscriptions": settings.rate_limit_subscriptions,
        }
        shared = settings.jobs_backend == "redis" and any(specs.values())
        return cls(specs, settings.redis_url if shared else "memory://")

    def check(self, route_class: RouteClass, client: str) -> None:
        """RateLimited (429 + Retry-After) when `client` is over its limit in this class."""
        item = self.items.get(route_class)
        if item is None or self.limiter is None:
            return
        try:
            if self.limiter.hit(item, route_class, client):
                return
            reset = self.limiter.get_window_stats(item, route_class, client).reset_time
        except Exception as exc:  # the shared store is away: serve rather than refuse everyone
            log.warning("rate limit not checked", extra={"error": type(exc).__name__})
            return
        wait = max(1, int(reset - time.time()) + 1)
        raise RateLimited(f"More than {item} from {client}.", headers={"Retry-After": str(wait)})


def client_address(request: Request) -> str:
    """Who is asking, for per-client limits: the peer address (the proxy's X-Forwarded-For when trusted)."""
    return request.client.host if request.client else "unknown"


def check_api_key(request: Request, settings: Settings) -> None:
    """When an API key is configured, require it (constant-time compare)."""
    if settings.api_key is None:
        return
    given = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
        raise Unauthorized("Send the API key in the X-API-Key header.", headers={"WWW-Authenticate": "X-API-Key"})


def _check(request: Request, route_class: RouteClass) -> None:
    check_api_key(request, request.app.state.settings)
    request.app.state.rate_limits.check(route_class, client_address(request))


async def images(request: Request) -> None:
    """/predict, /predict/batch, /predict/url."""
    _check(request, "images")


async def jobs(request: Request) -> None:
    """/videos and /jobs/…: uploads and polling share one bucket, apart from the images'."""
    _check(request, "jobs")


async def subscriptions(request: Request) -> None:
    """/subscriptions/…: only with an API key (the caller who owns them)."""
    if request.app.state.settings.api_key is None:
        raise SubscriptionsDisabled(
            "Set DEEPFAKE_API_KEY to manage subscriptions through the API; DEEPFAKE_ALERT_SUBSCRIPTIONS "
            "configures them otherwise."
        )
    _check(request, "subscriptions")
