"""No lost work: a queued job survives an API restart; a job whose worker died mid-run (its
heartbeat stopped: what kill -9 leaves) is taken over and finished, or failed after its attempts.
Each with both job backends: the embedded SQLite queue and a real Redis server."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from deepfake_api.jobs.queue import JobQueue
from tests.conftest import make_settings
from tests.jobs.test_videos import wait_done
from tests.utils.apps import serving
from tests.utils.videos import canvas_with, write_video


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, object]:
    """Settings for a fresh job store of either backend."""
    if request.param == "sqlite":
        return {"jobs_dir": tmp_path}
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return {"jobs_dir": tmp_path, "jobs_backend": "redis", "redis_url": url}


def test_queued_job_survives_a_restart(store: dict[str, object], real_tile: Image.Image) -> None:
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 4, fps=4)
    # First life: no worker, so the job stays queued when the API stops.
    with serving(**store, jobs_embedded_worker=False) as client:
        job = client.post("/videos", files={"file": ("a.mp4", data)}).json()
        assert client.get(f"/jobs/{job['id']}").json()["state"] == "queued"
    # Second life, with its worker: the same job is analysed.
    with serving(**store) as client:
        end = wait_done(client, job["id"])
        assert end["state"] == "done" and end["result"]["label"] != "no_face"
        assert client.get(f"/jobs/{job['id']}/frames/{end['result']['top_frames'][0]['index']}").status_code == 200


def _orphan(store: dict[str, object], data: bytes, attempts: int) -> str:
    """A job left `running` by a worker that is gone (no heartbeat since long ago), its video stored."""
    queue = JobQueue(make_settings(**store))
    part = queue.spool / "upload-x.part"
    part.write_bytes(data)
    doc = queue.new_job("video", "test", upload={"filename": "a.mp4", "bytes": len(data)})
    doc.update(state="running", owner="dead-worker", attempts=attempts, heartbeat_at=time.time() - 3600)
    queue.store.put_file(doc["id"], part)
    queue.store.create(doc)
    queue.close()
    return str(doc["id"])


def _video_kept(store: dict[str, object], job_id: str) -> bool:
    queue = JobQueue(make_settings(**store))
    try:
        with queue.store.open_file(job_id) as path:
            return path is not None
    finally:
        queue.close()


def test_a_lost_workers_job_is_taken_over(store: dict[str, object], real_tile: Image.Image) -> None:
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 4, fps=4)
    job_id = _orphan(store, data, attempts=1)
    with serving(**store, jobs_lease_s=2.0) as client:
        end = wait_done(client, job_id)
    assert end["state"] == "done" and end["attempts"] == 2


def test_a_job_that_keeps_losing_its_worker_fails_with_a_reason(store: dict[str, object]) -> None:
    data = write_video([np.zeros((64, 64, 3), np.uint8)] * 2, fps=4)
    job_id = _orphan(store, data, attempts=2)
    assert _video_kept(store, job_id)
    with serving(**store, jobs_lease_s=2.0, jobs_max_attempts=2) as client:
        end = wait_done(client, job_id)
    assert end["state"] == "failed" and end["problem"]["type"].endswith("/worker-lost")
    assert not _video_kept(store, job_id)
