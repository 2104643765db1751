"""Alerts: an event (a fake image, a finished or fake video) becomes one alert document per
matching subscription in the job store (state `alert`), each delivered through the durable queue.

At least once: an alert is written before its message is queued; a worker claims it
(compare-and-set `pending` -> `delivering`), sends it, and logs the attempt (time, status,
seconds). A retryable failure (timeout, 5xx, connection error) schedules the next attempt in the
queue after an exponential backoff with jitter (Huey keeps scheduled messages in SQLite/Redis, so a
restart loses none); after alert_max_attempts, or at once on a 4xx, it is `failed`. The reaper
re-queues an alert whose message went missing (a crash between write and enqueue, a worker killed
mid-send). The webhook-id is the alert id, the same on every attempt, so receivers can de-duplicate.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

from deepfake_api import metrics
from deepfake_api.alerts import channels
from deepfake_api.alerts.events import video_events
from deepfake_api.alerts.subscriptions import all_subscriptions, from_settings, validate
from deepfake_api.config import Settings
from deepfake_api.jobs.store import Doc, JobStore

log = logging.getLogger("deepfake_api.alerts")
TASK = "deliver_alert"
STATE = "alert"
UNSENT = ("pending", "delivering")


def now() -> float:
    return time.time()


class Alerts:
    def __init__(self, settings: Settings, store: JobStore, huey: Any, configured: list[Doc] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.configured = from_settings(settings) if configured is None else configured
        self._task = huey.task(name=TASK)(self.deliver)

    def announce_video(self, job: Doc) -> None:
        """A finished video job's events (video.done, and video.fake or video.uncertain)."""
        for event, data in video_events(job, self.settings.public_url):
            self.emit(event, data)

    def subscribe(self, spec: dict[str, Any]) -> Doc:
        """A subscription from an API request, checked (its webhook target resolved) and stored."""
        doc = validate(self.settings, spec, source="api")
        self.store.create(doc)
        return doc

    def unsubscribe(self, sub_id: str) -> None:
        self.store.delete(sub_id)

    def subscriptions(self) -> list[Doc]:
        return all_subscriptions(self.configured, self.store)

    def subscription(self, sub_id: str) -> Doc | None:
        for sub in self.configured:
            if sub["id"] == sub_id:
                return sub
        doc = self.store.get(sub_id)
        return doc if doc is not None and doc["state"] == "subscription" else None

    # -- events --------------------------------------------------------------------------------

    def emit(self, event: str, data: Doc) -> list[str]:
        """Queue `event` for every subscription that wants it; returns the alert ids."""
        score = data.get("score")
        wanted = [
            s
            for s in self.subscriptions()
            if event in s["events"] and (event == "video.done" or (score is not None and score >= s["min_score"]))
        ]
        ids = []
        at = now()
        for sub in wanted:
            doc: Doc = {
                "id": "msg_" + uuid.uuid4().hex,
                "state": STATE,
                "status": "pending",
                "subscription": sub["id"],
                "channel": sub["channel"],
                "event": event,
                "data": {**data, "at": at},
                "created_at": at,
                "next_at": at,
                "attempts": [],
                "expires_at": None,
            }
            self.store.create(doc)
            ids.append(doc["id"])
            self._enqueue(doc["id"])
        return ids

    def _enqueue(self, alert_id: str, delay: float = 0.0) -> None:
        try:
            if delay > 0:
                self._task.schedule(args=(alert_id,), delay=delay)
            else:
                self._task(alert_id)
        except Exception:  # the broker is away: the reaper sends it when it is back
            log.warning("alert not queued; the reaper will", extra={"alert_id": alert_id})

    # -- delivery (a worker) ---------------------------------------------------------------------

    def deliver(self, alert_id: str) -> None:
        token = uuid.uuid4().hex

        def claim(d: Doc) -> Doc | None:
            if d.get("status") != "pending" or d["next_at"] > now() + 1.0:
                return None  # delivered, failed, being sent, or an early duplicate
            d.update(status="delivering", claimed_at=now(), claim=token)
            return d

        doc = self.store.modify(alert_id, claim)
        if doc is None or doc.get("claim") != token:
            return  # not ours to send
        sub = self.subscription(doc["subscription"])
        if sub is None:
            attempt = channels.Attempt("failed", None, "the subscription was removed", 0.0)
        elif sub["channel"] == "webhook":
            attempt = channels.send_webhook(self.settings, sub, alert_id, channels.payload(doc["event"], doc["data"]))
        else:
            attempt = channels.send_email(self.settings, sub, alert_id, doc["event"], doc["data"])
        self._record(doc, attempt)

    def _record(self, doc: Doc, attempt: channels.Attempt) -> None:
        settings = self.settings
        n = len(doc["attempts"]) + 1
        outcome = attempt.outcome
        if outcome == "retry" and n >= settings.alert_max_attempts:
            outcome = "failed"
        delay = 0.0
        if outcome == "retry":
            delay = min(settings.alert_backoff_max_s, settings.alert_backoff_s * 2 ** (n - 1)) * random.uniform(
                0.5, 1.5
            )
        entry = {
            "n": n,
            "at": now(),
            "outcome": outcome,
            "status": attempt.status,
            "error": attempt.error,
            "seconds": round(attempt.seconds, 4),
        }

        def change(d: Doc) -> Doc:
            d["attempts"] = [*d["attempts"], entry]
            d.pop("claimed_at", None)
            d.pop("claim", None)
            if outcome == "retry":
                d.update(status="pending", next_at=now() + delay)
            else:
                d.update(status=outcome, finished_at=now(), expires_at=now() + settings.jobs_result_ttl_s)
            return d

        self.store.modify(doc["id"], change)
        metrics.ALERT_DELIVERIES.labels(doc["channel"], outcome).inc()
        metrics.ALERT_SECONDS.labels(doc["channel"]).observe(attempt.seconds)
        if outcome == "delivered":
            metrics.ALERT_LATENCY.labels(doc["channel"]).observe(now() - doc["created_at"])
        log.info(
            "alert attempt",
            extra={
                "alert_id": doc["id"],
                "event": doc["event"],
                "channel": doc["channel"],
                "attempt": n,
                "outcome": outcome,
                "status": attempt.status,
                "retry_in_s": round(delay, 1),
            },
        )
        if outcome == "retry":
            self._enqueue(doc["id"], delay)

    # -- the reaper ------------------------------------------------------------------------------

    def reap(self, lease_s: float) -> None:
        """Re-queue alerts whose message went missing; a send cut off by a dead worker is retried."""
        grace = max(lease_s, 30.0)
        unsent = [d for d in self.store.by_state(STATE) if d.get("status") in UNSENT]
        for doc in unsent:
            if doc["status"] == "pending" and doc["next_at"] < now() - grace:
                self._enqueue(doc["id"])
            elif doc["status"] == "delivering" and now() - doc["claimed_at"] > grace + self.settings.alert_timeout_s:
                self.store.modify(doc["id"], _release)
                self._enqueue(doc["id"])  # a duplicate message is harmless: deliver() claims first
        metrics.ALERTS_PENDING.set(len(unsent))

    def pending(self) -> int:
        """Alerts waiting for their first or next attempt, or being sent (the alert queue's depth)."""
        return sum(1 for d in self.store.by_state(STATE) if d.get("status") in UNSENT)

    def deliveries(self, sub_id: str, limit: int = 100) -> list[Doc]:
        docs = [d for d in self.store.by_state(STATE) if d["subscription"] == sub_id]
        return sorted(docs, key=lambda d: d["created_at"], reverse=True)[:limit]


def _release(d: Doc) -> Doc | None:
    """A send whose worker died: pending again, due now."""
    if d.get("status") != "delivering":
        return None
    d.update(status="pending", next_at=now())
    d.pop("claimed_at", None)
    d.pop("claim", None)
    return d
