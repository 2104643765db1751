"""`deepfake-api worker`: a process that only analyses queued videos (its own copy of the model).

With jobs_backend=redis, API replicas queue the jobs and any number of these consume them
(compose, Swarm and k8s run them as their own service). SIGTERM stops it after the current
frame's batch; a job cut off that way, or by kill -9, is taken over after jobs_lease_s.
"""

from __future__ import annotations

import asyncio
import logging

from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.jobs.video_job import VideoAnalyser
from deepfake_api.model import DeepfakeModel

log = logging.getLogger("deepfake_api.jobs")


def _no_uploads(data: bytes) -> object:
    raise RuntimeError("a worker judges video frames only")


def run(settings: Settings) -> int:
    from deepfake_api.app import configure_logging

    configure_logging(settings)
    model = DeepfakeModel(settings.model_path, threads=settings.inference_threads, assets_dir=settings.assets_dir)
    model.load()
    model.warm((1,))
    engine = InferenceEngine(
        model,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_batch_wait_ms,
        decode_threads=1,
        decode=_no_uploads,  # type: ignore[arg-type]
    )
    asyncio.run(engine.start())
    queue = JobQueue(settings)
    queue.runner = VideoAnalyser(queue, engine, model)
    log.info("worker ready", extra={"backend": settings.jobs_backend, "model": model.version})
    try:
        queue.run_worker()
    finally:
        queue.close()
        asyncio.run(engine.stop())
    return 0
