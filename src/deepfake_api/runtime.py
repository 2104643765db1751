"""The composition root: the one place that knows how the parts are wired.

`build_runtime(settings)` makes the model, the engine and the image service once; `start_jobs`
adds the job queue, the alerts side and the jobs service when the model is ready (a broker that is
not up yet is waited for by the caller). `create_app` (app.py) and the worker (`run_worker`) both
take a Runtime. Imports flow one way: runtime -> api/services -> alerts -> jobs -> engine -> model.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial

from deepfake_api import faces
from deepfake_api.alerts.delivery import Alerts
from deepfake_api.alerts.subscriptions import from_settings
from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.jobs.store import Doc
from deepfake_api.jobs.video_job import VideoAnalyser
from deepfake_api.jobs.worker import alive_file
from deepfake_api.logs import configure_logging
from deepfake_api.model import DeepfakeModel
from deepfake_api.services.images import ImageService
from deepfake_api.services.jobs import JobService

log = logging.getLogger("deepfake_api")


@dataclass
class Runtime:
    settings: Settings
    model: DeepfakeModel
    engine: InferenceEngine
    images: ImageService
    subscriptions: list[Doc] = field(default_factory=list)
    """The settings' subscriptions, checked at start (check_subscriptions)."""
    jobs: JobQueue | None = None
    alerts: Alerts | None = None
    job_service: JobService | None = None


def build_runtime(settings: Settings, model: DeepfakeModel | None = None, *, serve_images: bool = True) -> Runtime:
    """The model (not loaded yet), its engine and the image service. A worker (`serve_images=False`)
    scores video frames only: its engine decodes no uploads."""
    model = model or DeepfakeModel(
        settings.model_path, threads=settings.inference_threads, assets_dir=settings.assets_dir
    )
    engine = InferenceEngine(
        model,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_batch_wait_ms,
        max_in_flight=settings.max_in_flight,
        decode_threads=settings.decode_threads if serve_images else 1,
        retry_after_s=settings.retry_after_s,
        frame_max_wait_ms=settings.video_frame_max_wait_ms,
        decode=partial(_analyse, model, settings) if serve_images else _no_uploads,
    )
    images = ImageService(
        engine, model, request_timeout_s=settings.request_timeout_s, retry_after_s=settings.retry_after_s
    )
    return Runtime(settings, model, engine, images)


def check_subscriptions(runtime: Runtime) -> None:
    """The settings' subscriptions, each webhook target resolved and checked now: a target that is
    refused (or whose host does not resolve) fails the start with its reason, not a retry loop."""
    runtime.subscriptions = from_settings(runtime.settings)


def start_jobs(runtime: Runtime, *, worker: bool, hosted: bool = True) -> JobQueue:
    """The job queue with the alerts side subscribed to it; with `worker`, this process analyses
    videos (on this runtime's engine) and delivers alerts. Raises while the broker is unreachable."""
    settings = runtime.settings
    queue = JobQueue(settings)
    alerts = Alerts(settings, queue.store, queue.short_huey, runtime.subscriptions)
    queue.on_reap.append(partial(alerts.reap, settings.jobs_lease_s))
    if worker:
        queue.runner = VideoAnalyser(queue, runtime.engine, runtime.model, on_done=alerts.announce_video)
        if hosted:
            queue.start_worker(hosted=True)
    runtime.images.events = alerts.emit
    runtime.alerts, runtime.job_service, runtime.jobs = alerts, JobService(queue), queue
    return queue


def run_worker(settings: Settings) -> int:
    """`deepfake-api worker`: a process that only analyses queued videos (its own copy of the model)."""
    configure_logging(settings, libraries=True)  # huey's and redis's records too, as JSON, without storms
    runtime = build_runtime(settings, serve_images=False)
    runtime.model.load()
    runtime.model.warm((1,))
    check_subscriptions(runtime)
    asyncio.run(runtime.engine.start())
    queue = start_jobs(runtime, worker=True, hosted=False)
    queue.alive_file = alive_file(settings)
    queue.alive_file.unlink(missing_ok=True)
    log.info("worker ready", extra={"backend": settings.jobs_backend, "model": runtime.model.version})
    try:
        queue.run_worker()
    finally:
        queue.close()
        asyncio.run(runtime.engine.stop())
    return 0


def _analyse(model: DeepfakeModel, settings: Settings, data: bytes) -> faces.ImageFaces:
    """The face path for one upload, in a decode worker (the model's face finder is loaded by then)."""
    assert model.finder is not None
    return faces.analyse(
        data, model.finder, max_pixels=settings.max_pixels, min_side=settings.min_side, max_faces=settings.max_faces
    )


def _no_uploads(data: bytes) -> faces.ImageFaces:
    raise RuntimeError("a worker judges video frames only")
