"""A video job's state changes, as functions of its record: the admission and the client's (the
jobs service), the queue's and the reaper's (queue.py). Each is what a `store.modify(id, change)`
applies, so it runs inside the store's transaction and sees the record as it is now; None means
"no change". The worker's own (progress, done, stopped) live with the analysis (video_job.py).

    (admitted: queued + lease) -> queued -> running -> done | failed | cancelled
                       \\-> expired (lease)   \\-> queued again (worker lost) | failed (worker-lost)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from deepfake_api.errors import DeepfakeError
from deepfake_api.jobs.store import Doc


def now() -> float:
    return time.time()


def new_job(kind: str, client: str, *, lease_until: float | None = None, **fields: Any) -> Doc:
    """A job admitted under the caps: `queued`, but with a lease until its video is stored and its
    message sent (`queued_for_good`); a job whose queueing failed half-way expires by itself."""
    t = now()
    return {
        "id": uuid.uuid4().hex,
        "kind": kind,
        "state": "queued",
        "client": client,
        "created_at": t,
        "updated_at": t,
        "enqueued_at": t,
        "started_at": None,
        "finished_at": None,
        "expires_at": lease_until,
        "attempts": 0,
        "owner": None,
        "heartbeat_at": None,
        "cancel_requested": False,
        "progress": {"done": 0, "planned": None},
        "result": None,
        "problem": None,
        **fields,
    }


def described(doc: Doc, *, upload: dict[str, Any], video: dict[str, Any], lease_until: float) -> Doc:
    """The upload has arrived and its header is good: what it is, and a short lease to queue it."""
    doc.update(upload=upload, video=video, expires_at=lease_until, updated_at=now())
    return doc


def queued_for_good(doc: Doc) -> Doc:
    """Its message is sent: no lease from here on (the worker and the reaper own it)."""
    doc.update(expires_at=None, enqueued_at=now(), updated_at=now())
    return doc


def claimed(doc: Doc, *, token: str) -> Doc | None:
    """queued -> running, owned by `token`; None when the job is not queued (cancelled, finished, or
    a duplicate message for a job another worker runs)."""
    if doc["state"] != "queued":
        return None
    t = now()
    doc.update(state="running", owner=token, attempts=doc["attempts"] + 1, heartbeat_at=t, updated_at=t)
    doc["expires_at"] = None  # a worker has it: no admission lease any more
    doc["started_at"] = doc["started_at"] or t
    return doc


def cancelled(doc: Doc, ttl_s: int) -> Doc | None:
    """A client's cancel: a queued job (no worker has it) is cancelled now, and a later message finds
    it so; a running one is asked to stop (its worker does at the next frame); else no change."""
    if doc["state"] == "queued":
        t = now()
        doc.update(state="cancelled", finished_at=t, updated_at=t, expires_at=t + ttl_s)
        return doc
    if doc["state"] == "running":
        doc.update(cancel_requested=True, updated_at=now())
        return doc
    return None


def failed(doc: Doc, error: DeepfakeError, ttl_s: int) -> Doc:
    """`doc` as a failed job, its reason a problem object."""
    t = now()
    doc.update(
        state="failed",
        finished_at=t,
        updated_at=t,
        expires_at=t + ttl_s,
        problem=error.problem(instance=f"/jobs/{doc['id']}", request_id=doc.get("request_id", "")),
        owner=None,
    )
    return doc


def requeued(doc: Doc, *, owner: str | None) -> Doc | None:
    """The reaper's: a running job whose worker (`owner`) stopped reporting is queued again; None
    when it moved on meanwhile."""
    if doc["state"] != "running" or doc.get("owner") != owner:
        return None
    doc.update(state="queued", owner=None, enqueued_at=now(), updated_at=now())
    return doc


def new_token() -> str:
    return uuid.uuid4().hex
