"""What a video alert says: the verdict (job, model, score, label, tracks), never the video.
(An image's event is built where the image is judged: services/images.py.)"""

from __future__ import annotations

from deepfake_api.jobs.store import Doc


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
