"""Sending one alert: a signed webhook (Standard Webhooks) or an e-mail (SMTP). Each returns an
Attempt: delivered, retry (timeouts, 5xx, connection errors, SMTP 4xx) or failed (4xx, SMTP 5xx,
a target that is now refused). Secrets and passwords are never logged or returned."""

from __future__ import annotations

import asyncio
import html
import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid

from standardwebhooks import Webhook

from deepfake_api.alerts.subscriptions import fetcher
from deepfake_api.config import Settings
from deepfake_api.errors import UrlForbidden, UrlInvalid, UrlTimeout, UrlUnreachable
from deepfake_api.jobs.store import Doc


@dataclass
class Attempt:
    outcome: str  # delivered | retry | failed
    status: int | None  # the HTTP status or SMTP code, when there was one
    error: str | None
    seconds: float


def webhook_headers(secret: str, msg_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for this body: id, timestamp, v1 HMAC-SHA256 signature."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "Content-Type": "application/json",
    }


def send_webhook(settings: Settings, sub: Doc, msg_id: str, body: str) -> Attempt:
    started = time.perf_counter()
    headers = webhook_headers(sub["secret"], msg_id, body, datetime.now(UTC))

    async def post() -> int:
        client = fetcher(settings)
        try:
            return await client.post(sub["url"], body.encode(), headers)
        finally:
            await client.aclose()

    try:
        status = asyncio.run(post())
    except (UrlTimeout, UrlUnreachable) as exc:
        return Attempt("retry", None, exc.title, time.perf_counter() - started)
    except (UrlForbidden, UrlInvalid) as exc:
        return Attempt("failed", None, f"{exc.title}: {exc.detail}", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if 200 <= status < 300:
        return Attempt("delivered", status, None, seconds)
    if status >= 500:
        return Attempt("retry", status, f"HTTP {status}", seconds)
    if 300 <= status < 400:
        return Attempt("failed", status, f"HTTP {status}: redirects are not followed", seconds)
    return Attempt("failed", status, f"HTTP {status}", seconds)


def _render(event: str, data: Doc, settings: Settings) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an alert e-mail."""
    what = {
        "image.fake": "a fake face in an image",
        "image.uncertain": "a face it cannot judge in an image",
        "video.done": "a video analysed",
        "video.fake": "a fake face in a video",
        "video.uncertain": "a face it cannot judge in a video",
    }[event]
    score = data.get("score")
    lines = [
        f"The deepfake detection service found {what}.",
        "",
        f"Verdict: {data.get('label')}" + (f", P(fake) {score:.3f}" if isinstance(score, float) else ""),
        f"When: {datetime.fromtimestamp(data['at'], UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"Model: {data['model']['name']} {data['model']['version']}",
    ]
    if data.get("request_id"):
        lines.append(f"Request ID: {data['request_id']}")
    if data.get("job_id"):
        lines.append(f"Job: {data.get('job_url') or data['job_id']}")
    if data.get("tracks"):
        lines.append(f"Face tracks: {len(data['tracks'])}, the most fake P(fake) {data['tracks'][0]['score']:.3f}")
    lines += ["", "No image is attached: the service does not keep what it is sent."]
    text = "\n".join(lines) + "\n"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines[2:] if line and not line.startswith("No image"))
    body = (
        f"<p>The deepfake detection service found <strong>{html.escape(what)}</strong>.</p><ul>{items}</ul>"
        "<p>No image is attached: the service does not keep what it is sent.</p>"
    )
    subject = f"[deepfake-api] {data.get('label')}: {what}"
    return subject, text, body


def send_email(settings: Settings, sub: Doc, msg_id: str, event: str, data: Doc) -> Attempt:
    started = time.perf_counter()
    subject, text, body = _render(event, data, settings)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.smtp_from, ", ".join(sub["emails"]), subject
    msg["Message-ID"] = make_msgid(idstring=msg_id)
    msg["X-Deepfake-Alert-Id"] = msg_id
    msg.set_content(text)
    msg.add_alternative(f"<!doctype html><html><body>{body}</body></html>", subtype="html")
    timeout = settings.alert_timeout_s
    try:
        if settings.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        transient = all(400 <= c < 500 for c in codes)
        return Attempt(
            "retry" if transient else "failed", codes[0], "recipients refused", time.perf_counter() - started
        )
    except smtplib.SMTPResponseException as exc:
        transient = 400 <= exc.smtp_code < 500
        return Attempt(
            "retry" if transient else "failed", exc.smtp_code, f"SMTP {exc.smtp_code}", time.perf_counter() - started
        )
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        return Attempt("retry", None, type(exc).__name__, time.perf_counter() - started)
    return Attempt("delivered", 250, None, time.perf_counter() - started)


def payload(event: str, data: Doc) -> str:
    """The Standard Webhooks payload: {"type", "timestamp", "data"}; the verdict, never the image."""
    at = datetime.fromtimestamp(data["at"], UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": at, "data": {k: v for k, v in data.items() if k != "at"}})
