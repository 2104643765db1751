"""Backpressure for videos: a full queue answers 503 + Retry-After, one client's share 429, before
the upload is read; nothing of a refused upload is kept."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from fastapi.testclient import TestClient

from tests.jobs.conftest import redis_server
from tests.utils.apps import serving
from tests.utils.problems import assert_problem
from tests.utils.videos import write_video

CLIP = write_video([np.full((64, 64, 3), 90, np.uint8)] * 2, fps=4)


def _post(client: TestClient, ip: str | None = None) -> httpx.Response:
    """POST the clip as `client`, or as another end client at `ip` on the same running app."""
    if ip is not None:
        client = TestClient(client.app, client=(ip, 50000))  # not entered: shares the running app
    return client.post("/videos", files={"file": ("a.mp4", CLIP)})


def _spooled(jobs_dir: Path) -> list[str]:
    return sorted(p.name for p in (jobs_dir / "spool").glob("upload-*"))


def test_a_full_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    # No worker: queued jobs stay queued, so the queue fills deterministically.
    with serving(jobs_dir=tmp_path, jobs_embedded_worker=False, jobs_max_active=3, jobs_retry_after_s=7) as client:
        accepted = [_post(client, f"198.51.100.{i}") for i in range(3)]
        assert [r.status_code for r in accepted] == [202, 202, 202]
        body = assert_problem(_post(client, "198.51.100.77"), 503, "queue-full")
        assert "3" in body["detail"]
        r = _post(client, "198.51.100.78")
        assert r.headers["retry-after"] == "7"
        assert _spooled(tmp_path) == []  # refused before anything was written
        # Cancelling one frees a place.
        assert client.delete(f"/jobs/{accepted[0].json()['id']}").status_code == 202
        assert _post(client, "198.51.100.79").status_code == 202


def test_one_client_gets_429_while_others_are_served(tmp_path: Path) -> None:
    with serving(jobs_dir=tmp_path, jobs_embedded_worker=False, jobs_max_per_client=2, jobs_retry_after_s=5) as client:
        assert [_post(client).status_code for _ in range(2)] == [202, 202]
        r = _post(client)
        assert_problem(r, 429, "too-many-jobs")
        assert r.headers["retry-after"] == "5"
        assert _post(client, "192.0.2.50").status_code == 202  # another client is not held back
        assert _spooled(tmp_path) == []


def test_a_broker_that_goes_away_is_503_never_500(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as (url, proc),
        serving(
            jobs_dir=tmp_path, jobs_backend="redis", redis_url=url, jobs_embedded_worker=False, jobs_retry_after_s=3
        ) as client,
    ):
        job = _post(client)
        assert job.status_code == 202
        proc.kill()
        proc.wait()
        r = _post(client)
        assert_problem(r, 503, "queue-unavailable")
        assert r.headers["retry-after"] == "3"
        assert_problem(client.get(f"/jobs/{job.json()['id']}"), 503, "queue-unavailable")
        assert client.get("/predict").status_code == 405  # the rest of the service is unaffected
        assert _spooled(tmp_path) == []
