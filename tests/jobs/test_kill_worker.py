"""kill -9 of a real worker process mid-job: the job is not stuck `running`; the next worker takes
it over after the lease and finishes it. The API and the workers share the embedded (SQLite)
queue, as `make run` plus `deepfake-api worker` would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import MODEL_PATH
from tests.jobs.test_videos import wait_done
from tests.utils.apps import serving
from tests.utils.videos import canvas_with, write_video

LEASE_S = 3.0


@contextmanager
def worker(jobs_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DEEPFAKE_MODEL_PATH": str(MODEL_PATH),
        "DEEPFAKE_JOBS_DIR": str(jobs_dir),
        "DEEPFAKE_JOBS_LEASE_S": str(LEASE_S),
        "DEEPFAKE_VIDEO_SAMPLE_FPS": "4",
        "DEEPFAKE_LOG_JSON": "false",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from deepfake_api.cli import main; raise SystemExit(main(['worker']))"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _check(jobs_dir: Path) -> int:
    """`deepfake-api worker --check`, the worker container's healthcheck."""
    env = {**os.environ, "DEEPFAKE_JOBS_DIR": str(jobs_dir), "DEEPFAKE_JOBS_LEASE_S": str(LEASE_S)}
    code = "from deepfake_api.cli import main; raise SystemExit(main(['worker', '--check']))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode


def _wait_for(client: TestClient, job_id: str, predicate, timeout: float, log: Path) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if predicate(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {job}\nworker log:\n{log.read_text()[-3000:]}")


def test_kill_9_mid_job_then_the_next_worker_finishes_it(tmp_path: Path, real_tile: Image.Image) -> None:
    jobs_dir, log = tmp_path / "jobs", tmp_path / "worker.log"
    # 20 s at 4 fps: 80 sampled frames, each with a face: long enough to be killed in the middle.
    frames = [canvas_with([(real_tile, (60 + (i % 5) * 4, 40))]) for i in range(80)]
    data = write_video(frames, fps=4, crf=23)
    with serving(jobs_dir=jobs_dir, jobs_embedded_worker=False, jobs_lease_s=LEASE_S) as client:
        job_id = client.post("/videos", files={"file": ("clip.mp4", data)}).json()["id"]
        assert _check(jobs_dir) == 1  # no worker has run here yet
        with worker(jobs_dir, log) as first:
            running = _wait_for(
                client, job_id, lambda j: j["state"] == "running" and j["progress"]["done"] >= 5, 180, log
            )
            assert _check(jobs_dir) == 0  # its healthcheck: alive
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        assert running["attempts"] == 1
        killed_at = running["progress"]["done"]
        # Nobody is working on it now: it stays `running` (its lease is not up), and does not move.
        time.sleep(1.0)
        stalled = client.get(f"/jobs/{job_id}").json()
        assert stalled["state"] == "running" and stalled["progress"]["done"] < stalled["progress"]["planned"]
        with worker(jobs_dir, log):
            end = wait_done(client, job_id, timeout=240)
    assert end["state"] == "done", (end, log.read_text()[-3000:])
    assert end["attempts"] == 2
    assert end["progress"]["done"] == end["progress"]["planned"] == 80 > killed_at
    assert end["result"]["label"] != "no_face" and len(end["result"]["frames"]) == 80
    assert not list((jobs_dir / "spool").glob(f"{job_id}*"))  # the video is gone after analysis
