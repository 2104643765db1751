"""The video analysis task: a queued job id in, the job's result (or its reason) in the store.

Each sampled frame goes through the image service's face path (faces.analyse_frame) and its
engine (batched with the images being served); faces are linked into tracks and the verdict is
aggregated (video.py). Progress and a heartbeat are written after every frame, and a cancel or
a lost claim is noticed there. The uploaded video is deleted once the job ends (done, failed or
cancelled); it stays only while a retry may still need it. A job submitted with `explain` has the
judged faces of its kept top frames scored once more, with heatmaps (only those frames: the
other frames cost what they always do).
"""

from __future__ import annotations

import heapq
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from deepfake_api import explain, faces, metrics, tracking, video
from deepfake_api.engine import InferenceEngine
from deepfake_api.errors import AnalysisFailed, DeepfakeError, InvalidVideo, JobTimeout
from deepfake_api.jobs.queue import JobQueue, failed, now
from deepfake_api.jobs.store import Doc
from deepfake_api.model import DeepfakeModel

log = logging.getLogger("deepfake_api.jobs")
THUMB_SIDE = 480
TOP_FRAMES = 3


class _Stop(Exception):
    """The job was cancelled, or another worker owns it now."""


def limits_of(settings: Any) -> video.Limits:
    return video.Limits(settings.video_max_pixels, settings.video_min_side, settings.video_max_duration_s)


def thumbnail(rgb: Any) -> bytes:
    im = Image.fromarray(rgb)
    im.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def frame_blob(index: int) -> str:
    return f"frame-{index}.jpg"


class VideoAnalyser:
    def __init__(
        self,
        queue: JobQueue,
        engine: InferenceEngine,
        model: DeepfakeModel,
        on_done: Callable[[Doc], object] | None = None,
    ) -> None:
        self.on_done = on_done  # told of every finished job (the alerts side subscribes; jobs/ knows nothing of it)
        self.queue = queue
        self.store = queue.store
        self.settings = queue.settings
        self.engine = engine
        self.model = model

    def __call__(self, job_id: str) -> None:
        doc = self.queue.claim(job_id)
        if doc is None:
            return
        owner = doc["owner"]
        started = time.perf_counter()
        try:
            with self.store.open_file(job_id) as path:
                if path is None:
                    raise InvalidVideo("The uploaded video is no longer available.")
                result = self._analyse(job_id, owner, path, doc)
        except _Stop:
            self._end(job_id, owner, self._cancelled)
            metrics.JOBS.labels("cancelled").inc()
            return
        except DeepfakeError as exc:
            error_ = exc
            self._end(job_id, owner, lambda d: failed(d, error_, self.settings.jobs_result_ttl_s))
            metrics.JOBS.labels("failed").inc()
            log.info("video job failed", extra={"job_id": job_id, "problem": exc.slug})
            return
        except Exception:
            log.exception("video job crashed", extra={"job_id": job_id})
            error = AnalysisFailed("The analysis failed unexpectedly; the video may be unusual. It was not kept.")
            self._end(job_id, owner, lambda d: failed(d, error, self.settings.jobs_result_ttl_s))
            metrics.JOBS.labels("failed").inc()
            return
        elapsed = time.perf_counter() - started

        def done(d: Doc) -> Doc:
            t = now()
            d.update(state="done", finished_at=t, updated_at=t, expires_at=t + self.settings.jobs_result_ttl_s)
            n = result["sampling"]["frames_analysed"]
            d.update(result=result, owner=None, progress={"done": n, "planned": n})  # a plan was an estimate
            return d

        ended = self._end(job_id, owner, done)
        if ended is not None and ended.get("state") == "done" and self.on_done is not None:
            try:
                self.on_done(ended)
            except Exception as exc:  # the job is done either way
                log.warning("video job done, not announced", extra={"job_id": job_id, "error": type(exc).__name__})
        metrics.JOBS.labels("done").inc()
        metrics.JOB_SECONDS.observe(elapsed)
        log.info("video job done", extra={"job_id": job_id, "label": result["label"], "seconds": round(elapsed, 2)})

    def _cancelled(self, d: Doc) -> Doc:
        t = now()
        d.update(state="cancelled", finished_at=t, updated_at=t, expires_at=t + self.settings.jobs_result_ttl_s)
        d["owner"] = None
        return d

    def _end(self, job_id: str, owner: str, change: Any) -> Doc | None:
        """Write the job's end if this worker still owns it; the video is deleted either way
        (unless another worker took the job over and still needs it). The job as it is now."""
        doc = self.store.modify(job_id, lambda d: change(d) if d.get("owner") == owner else None)
        if doc is None or doc.get("owner") is None:
            self.store.drop_file(job_id)
        return doc

    def _progress(self, job_id: str, owner: str, done: int, planned: int, deadline: float) -> None:
        def change(d: Doc) -> Doc:
            if d.get("owner") != owner or d["state"] != "running" or d.get("cancel_requested"):
                raise _Stop
            t = now()
            d.update(heartbeat_at=t, updated_at=t, progress={"done": done, "planned": planned})
            return d

        if self.store.modify(job_id, change) is None:
            raise _Stop  # deleted or expired
        if time.monotonic() > deadline:
            raise JobTimeout(f"The analysis took longer than {self.settings.jobs_timeout_s:g} s.")

    def _explain_top_frames(
        self, top_frames: list[dict[str, Any]], frames: list[dict[str, Any]], kept: dict[int, faces.ImageFaces]
    ) -> None:
        """Each kept top frame gets `faces`: its faces as in `frames`, every judged one with its heatmap
        (its judged faces scored again with explain; the scores stay the first pass's)."""
        by_index = {frame["index"]: frame for frame in frames}
        timeout = self.settings.request_timeout_s * 4
        for top in top_frames:
            image = kept.get(top["index"])
            if image is None:
                continue
            verdict = self.engine.score_frame(image, explain=True).result(timeout=timeout)
            method = self.model.explain_method()
            out = []
            for face, f in zip(by_index[top["index"]]["faces"], verdict.faces, strict=True):
                heat = explain.heatmap(f, method) if face["status"] == "judged" else None
                out.append({**face, "heatmap": heat.model_dump() if heat is not None else None})
            top["faces"] = out

    def _analyse(self, job_id: str, owner: str, path: Any, doc: Doc) -> dict[str, Any]:
        settings = self.settings
        decision = self.model.decision
        assert decision is not None and self.model.finder is not None
        limits = limits_of(settings)
        info = video.probe(path, limits)
        step = video.sample_times(info.duration_s, settings.video_sample_fps, settings.video_max_frames)
        planned = video.planned_frames(info.duration_s, step, settings.video_max_frames)
        deadline = time.monotonic() + settings.jobs_timeout_s
        self._progress(job_id, owner, 0, planned, deadline)
        tracker = video.Tracker()
        frames: list[dict[str, Any]] = []
        best: list[tuple[float, int, bytes]] = []  # min-heap (score, -index, thumbnail) of the most-fake frames
        explaining = bool(doc.get("explain"))
        best_faces: dict[int, faces.ImageFaces] = {}  # with explain: the faces (and crops) of the frames in `best`
        rotation = 0
        detectors = self.model.detector_info()
        for sampled in video.sample_frames(path, info, limits, step, settings.video_max_frames):
            t0 = time.perf_counter()
            rotation = sampled.rotation
            image = faces.analyse_frame(
                sampled.rgb, self.model.finder, coded=sampled.coded, fmt=info.container, max_faces=settings.max_faces
            )
            verdict = self.engine.score_frame(image).result(timeout=settings.request_timeout_s * 4)
            ids = tracker.assign(sampled.index, tracking.detections([f.candidate for f in verdict.faces], sampled.rgb))
            frame_faces = []
            for track_id, f in zip(ids, verdict.faces, strict=True):
                x, y, w, h = f.candidate.face.box
                frame_faces.append(
                    {
                        "track": track_id,
                        "status": f.candidate.status,
                        "box": {"x": x, "y": y, "width": w, "height": h},
                        "detection_score": min(1.0, f.candidate.face.score),
                        "score": f.score,
                        "label": f.label,
                        "detectors": [
                            {**d, "score": f.detectors[d["name"]]} for d in detectors if d["name"] in f.detectors
                        ],
                    }
                )
            frames.append({"index": sampled.index, "time_s": round(sampled.time_s, 3), "faces": frame_faces})
            if verdict.score is not None:
                # The same order as aggregate's top frames: most fake first, the earlier on ties.
                entry = (verdict.score, -sampled.index, b"")
                if len(best) < TOP_FRAMES or entry[:2] > best[0][:2]:
                    entry = (verdict.score, -sampled.index, thumbnail(sampled.rgb))
                    if len(best) < TOP_FRAMES:
                        heapq.heappush(best, entry)
                    else:
                        best_faces.pop(-heapq.heapreplace(best, entry)[1], None)
                    if explaining:
                        best_faces[sampled.index] = image
            metrics.VIDEO_FRAMES.inc()
            metrics.VIDEO_FRAME_SECONDS.inc(time.perf_counter() - t0)
            self._progress(job_id, owner, sampled.index + 1, planned, deadline)
        summary = video.aggregate(frames, decision, top_k=TOP_FRAMES)
        kept = {-neg for _, neg, _ in best}
        for _, neg, jpeg in best:
            self.store.put_blob(job_id, frame_blob(-neg), jpeg)
        for top in summary["top_frames"]:
            top["image"] = f"/jobs/{job_id}/frames/{top['index']}" if top["index"] in kept else None
        if explaining:
            self._explain_top_frames(summary["top_frames"], frames, best_faces)
        warnings = []
        analysed = len(frames)
        if analysed < planned:
            warnings.append(f"only {analysed} of {planned} planned frames could be decoded (the video ends early)")
        return {
            **summary,
            "threshold": decision.threshold,
            "uncertain_band": [decision.band_low, decision.band_high],
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "detectors": detectors,
            "video": {**info.as_dict(), "rotation": rotation},
            "sampling": {"step_s": round(step, 4), "frames_planned": planned, "frames_analysed": analysed},
            "frames": frames,
            "warnings": warnings,
        }
