"""`deepfake-api worker`: a process that only analyses queued videos (its own copy of the model).

With jobs_backend=redis, API replicas queue the jobs and any number of these consume them
(compose, Swarm and k8s run them as their own service). SIGTERM stops it after the current
frame's batch; a job cut off that way, or by kill -9, is taken over after jobs_lease_s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from deepfake_api.config import Settings

log = logging.getLogger("deepfake_api.jobs")


def _no_uploads(data: bytes) -> object:
    raise RuntimeError("a worker judges video frames only")


ALIVE_NAME = "worker.alive"


def alive_file(settings: Settings) -> Path:
    return settings.jobs_dir / ALIVE_NAME


def check(settings: Settings) -> tuple[bool, str]:
    """`deepfake-api worker --check` (a container healthcheck): alive when this host's worker
    reached the job store within the last minute (or 3 leases)."""
    try:
        age = time.time() - alive_file(settings).stat().st_mtime
    except OSError:
        return False, "no worker heartbeat yet"
    stale = age > max(60.0, 3 * settings.jobs_lease_s)
    return not stale, f"last heartbeat {age:.0f} s ago{' (stale)' if stale else ''}"


def run(settings: Settings) -> int:
    from deepfake_api.app import configure_logging
    from deepfake_api.engine import InferenceEngine
    from deepfake_api.jobs.queue import JobQueue
    from deepfake_api.jobs.video_job import VideoAnalyser
    from deepfake_api.model import DeepfakeModel

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
    queue.alive_file = alive_file(settings)
    queue.alive_file.unlink(missing_ok=True)
    log.info("worker ready", extra={"backend": settings.jobs_backend, "model": model.version})
    try:
        queue.run_worker()
    finally:
        queue.close()
        asyncio.run(engine.stop())
    return 0
