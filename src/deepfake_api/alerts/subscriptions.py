"""Subscriptions: who is told about what. From the settings (a single-tenant deployment) and, when
an API key is set, created through /subscriptions and kept in the job store (state `subscription`).

A webhook target must be https on a public address (every address its host resolves to), unless
alert_allow_private; it is checked here, when the subscription is made, and again at every delivery
(the host's addresses may change). Secrets are Standard Webhooks secrets (`whsec_` + base64).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import ssl
import time
import uuid
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from deepfake_api.config import Settings
from deepfake_api.errors import DeepfakeError, InvalidSubscription
from deepfake_api.fetch import FetchPolicy, SafeFetcher
from deepfake_api.jobs.store import Doc, JobStore
from deepfake_api.records import EventName

EVENTS = tuple(EventName)
DEFAULT_EVENTS = [EventName.IMAGE_FAKE, EventName.VIDEO_FAKE]
EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
STATE = "subscription"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every delivery (building one loads the CA bundle: ~40 ms of CPU)."""
    return ssl.create_default_context()


def fetcher(settings: Settings) -> SafeFetcher:
    return SafeFetcher(policy(settings), verify=tls_context())


def policy(settings: Settings) -> FetchPolicy:
    """How webhook targets are reached: any port, no redirects followed, bounded time."""
    return FetchPolicy(
        max_bytes=65536,
        timeout_s=settings.alert_timeout_s,
        max_redirects=0,
        any_port=True,
        allow_private=settings.alert_allow_private,
        user_agent="deepfake-api-webhooks/1",
    )


def check_target(settings: Settings, url: str) -> None:
    """InvalidSubscription unless `url` is an acceptable webhook target now (422)."""
    scheme = urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and settings.alert_allow_private):
        raise InvalidSubscription("A webhook URL must be https.")

    async def resolve_and_check() -> None:
        checker = fetcher(settings)
        try:
            await checker.check(url)  # the same checks as a delivery's
        finally:
            await checker.aclose()

    try:
        asyncio.run(resolve_and_check())
    except DeepfakeError as exc:
        raise InvalidSubscription(f"The webhook target is refused: {exc.detail}") from None


def validate(settings: Settings, spec: dict[str, Any], *, source: str, sub_id: str | None = None) -> Doc:
    """A subscription document from a request body or a settings entry; InvalidSubscription if wrong."""
    url, emails = spec.get("url"), spec.get("emails")
    if bool(url) == bool(emails):
        raise InvalidSubscription("Give either a webhook `url` or a list of `emails`, not both.")
    events = list(spec.get("events") or DEFAULT_EVENTS)
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidSubscription(f"Unknown events {unknown}; known: {', '.join(EVENTS)}.")
    min_score = spec.get("min_score", 0.0)
    if not isinstance(min_score, int | float) or not 0 <= min_score <= 1:
        raise InvalidSubscription("`min_score` must be a number from 0 to 1.")
    doc: Doc = {
        "id": sub_id or "sub_" + uuid.uuid4().hex[:20],
        "state": STATE,
        "source": source,
        "events": sorted(set(events), key=EVENTS.index),
        "min_score": float(min_score),
        "created_at": time.time(),
        "expires_at": None,
    }
    if url:
        if not isinstance(url, str) or len(url) > 2048:
            raise InvalidSubscription("`url` must be a URL of at most 2048 characters.")
        secret = spec.get("secret") or new_secret()
        if not isinstance(secret, str) or not secret.startswith("whsec_"):
            raise InvalidSubscription("`secret` must be a Standard Webhooks secret: whsec_ + base64.")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
        except ValueError:
            raise InvalidSubscription("`secret` is not valid base64 after whsec_.") from None
        if len(key) < 16:
            raise InvalidSubscription("`secret` must hold at least 16 bytes.")
        check_target(settings, url)  # last: it resolves the host
        doc.update(channel="webhook", url=url, secret=secret)
    else:
        if not isinstance(emails, list) or not 1 <= len(emails) <= 20:
            raise InvalidSubscription("`emails` must be a list of 1 to 20 addresses.")
        bad = [e for e in emails if not isinstance(e, str) or not EMAIL.match(e)]
        if bad:
            raise InvalidSubscription(f"Not e-mail addresses: {bad[:3]}.")
        if not settings.smtp_host:
            raise InvalidSubscription("E-mail alerts need an SMTP server (DEEPFAKE_SMTP_HOST) on this service.")
        doc.update(channel="email", emails=list(dict.fromkeys(emails)))
    return doc


def from_settings(settings: Settings) -> list[Doc]:
    """The settings' subscriptions (ids settings-0, settings-1, …); validated at startup."""
    return [
        validate(settings, dict(spec), source="settings", sub_id=f"settings-{i}")
        for i, spec in enumerate(settings.alert_subscriptions)
    ]


def all_subscriptions(settings_subs: list[Doc], store: JobStore) -> list[Doc]:
    return settings_subs + sorted(store.by_state(STATE), key=lambda d: d["created_at"])


def public(doc: Doc) -> Doc:
    """A subscription as the API shows it: never its secret."""
    return {k: v for k, v in doc.items() if k not in ("secret", "state", "expires_at")}
