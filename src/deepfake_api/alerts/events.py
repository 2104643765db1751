"""What an alert says: the verdict (request id, model, score, label, faces), never the image."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from deepfake_api.jobs.store import Doc

log = logging.getLogger("deepfake_api.alerts")


def image_event(pred: Any) -> tuple[str, Doc] | None:
    """(event, data) for a Prediction worth telling about, else None."""
    if pred.label not in ("fake", "uncertain"):
        return None
    faces = [
        {"box": f.box.model_dump(), "label": f.label, "score": f.score} for f in pred.faces if f.status == "judged"
    ]
    return f"image.{pred.label}", {
        "request_id": pred.request_id,
        "label": pred.label,
        "score": pred.score,
        "threshold": pred.threshold,
        "model": {"name": pred.model.name, "version": pred.model.version},
        "faces": faces,
    }


def video_events(job: Doc, public_url: str) -> list[tuple[str, Doc]]:
    """video.done always, and video.fake or video.uncertain by the verdict."""
    res = job["result"]
    data = {
        "job_id": job["id"],
        "job_url": f"{public_url.rstrip('/')}/jobs/{job['id']}" if public_url else None,
        "request_id": job.get("request_id"),
        "label": res["label"],
        "score": res["score"],
        "threshold": res["threshold"],
        "model": {"name": res["model"]["name"], "version": res["model"]["version"]},
        "tracks": sorted(
            (
                {
                    "id": t["id"],
                    "label": t["label"],
                    "score": t["score"],
                    "frames": t["frames"],
                    "first_time_s": t["first_time_s"],
                    "last_time_s": t["last_time_s"],
                }
                for t in res["tracks"]
            ),
            key=lambda t: -t["score"],
        ),
        "top_frames": [{k: f[k] for k in ("index", "time_s", "track", "score")} for f in res["top_frames"]],
    }
    events = [("video.done", data)]
    if res["label"] in ("fake", "uncertain"):
        events.append((f"video.{res['label']}", data))
    return events


def notify_image(app: Any, pred: Any) -> None:
    """Off the request's path: the answer is never slowed or failed by alerting."""
    queue = getattr(app.state, "jobs", None)
    event = image_event(pred)
    if queue is None or event is None:
        return

    def emit() -> None:
        try:
            queue.alerts.emit(*event)
        except Exception:  # the store is away: this alert is lost, the answer was not
            log.exception("image alert not recorded", extra={"request_id": pred.request_id})

    asyncio.get_running_loop().run_in_executor(None, emit)
