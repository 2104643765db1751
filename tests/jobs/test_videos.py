"""POST /videos through the real app, queue and model: a clip with a known fake face in known
frames comes back with that face's track judged fake and those frames flagged."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from PIL import Image

from tests.utils.problems import assert_problem
from tests.utils.videos import canvas_with, write_video

FPS = 4


def wait_done(client: TestClient, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_fake_face_in_known_frames_is_its_own_fake_track(
    jobs_client: TestClient, fake_tile: Image.Image, real_tile: Image.Image
) -> None:
    # 12 frames at 4 fps: the real face on the left throughout, the fake one on the right in frames 4-9.
    fake_frames = set(range(4, 10))
    frames = [
        canvas_with([(real_tile, (10, 30)), (fake_tile if i in fake_frames else None, (330, 30))], size=(660, 360))
        for i in range(12)
    ]
    data = write_video(frames, fps=FPS)
    r = jobs_client.post("/videos", files={"file": ("clip.mp4", data)})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['id']}"
    job = wait_done(jobs_client, r.json()["id"])
    assert job["state"] == "done", job
    result = job["result"]
    assert result["sampling"]["frames_analysed"] == 12
    assert result["label"] == "fake"
    assert len(result["tracks"]) == 2
    by_side = {("left" if f["box"]["x"] < 330 else "right"): f["track"] for fr in result["frames"] for f in fr["faces"]}
    tracks = {t["id"]: t for t in result["tracks"]}
    fake_track, real_track = tracks[by_side["right"]], tracks[by_side["left"]]
    assert fake_track["label"] == "fake" and fake_track["frames"] == len(fake_frames)
    assert set(fake_track["fake_frames"]) == fake_frames
    assert real_track["label"] != "fake" and real_track["frames"] == 12 and not real_track["fake_frames"]
    assert {f["index"] for f in result["top_frames"]} <= fake_frames
    top = result["top_frames"][0]
    img = jobs_client.get(top["image"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"


def test_wait_answers_a_short_clip_in_one_call(jobs_client: TestClient, real_tile: Image.Image) -> None:
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 4, fps=FPS)
    r = jobs_client.post("/videos?wait=60", files={"file": ("short.mp4", data)})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "done" and r.json()["result"]["label"] in ("real", "uncertain")


def test_rotated_phone_video_is_judged_upright(jobs_client: TestClient, real_tile: Image.Image) -> None:
    upright = canvas_with([(real_tile, (100, 30))], size=(480, 360))
    sideways = upright.transpose(1, 0, 2)[::-1].copy()  # turned 90° clockwise... as a sensor stores it
    # Display matrix: turn 90° counter-clockwise to show it upright.
    data = write_video([sideways] * 4, fps=FPS, rotation=90)
    job = jobs_client.post("/videos?wait=60", files={"file": ("phone.mp4", data)}).json()
    assert job["state"] == "done", job
    assert job["result"]["video"]["rotation"] in (90, 270)
    assert job["result"]["label"] != "no_face"


def test_variable_frame_rate(jobs_client: TestClient, real_tile: Image.Image) -> None:
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.6, 2.4, 2.45]
    data = write_video([canvas_with([(real_tile, (100, 30))])] * len(times), fps=10, times=times)
    job = jobs_client.post("/videos?wait=60", files={"file": ("vfr.mp4", data)}).json()
    assert job["state"] == "done", job
    sampled = [f["time_s"] for f in job["result"]["frames"]]
    assert sampled == sorted(sampled) and len(sampled) >= 4
    # 4 fps sampling: at least 0.25 s apart, less rounding
    assert all(b - a >= 0.2 for a, b in zip(sampled, sampled[1:], strict=False))


def test_unknown_job_is_404_problem(jobs_client: TestClient) -> None:
    assert_problem(jobs_client.get("/jobs/nope"), 404, "job-not-found")


def test_cancel_then_delete(jobs_client: TestClient, real_tile: Image.Image) -> None:
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 40, fps=FPS)
    job = jobs_client.post("/videos", files={"file": ("long.mp4", data)}).json()
    r = jobs_client.delete(f"/jobs/{job['id']}")
    assert r.status_code in (202, 204)
    end = wait_done(jobs_client, job["id"]) if r.status_code == 202 else None
    if end is not None:
        assert end["state"] in ("cancelled", "done")
        assert jobs_client.delete(f"/jobs/{job['id']}").status_code == 204
    assert_problem(jobs_client.get(f"/jobs/{job['id']}"), 404, "job-not-found")


def test_a_video_job_leaves_its_metrics(jobs_client: TestClient, real_tile: Image.Image) -> None:
    from tests.api.test_metrics import _delta, _get, _scrape

    before = _scrape(jobs_client)
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 8, fps=FPS)
    job = wait_done(jobs_client, jobs_client.post("/videos", files={"file": ("m.mp4", data)}).json()["id"])
    assert job["state"] == "done"
    after = _scrape(jobs_client)
    frames = job["result"]["sampling"]["frames_analysed"]
    assert _delta(before, after, "deepfake_jobs_total", outcome="done") == 1
    assert _delta(before, after, "deepfake_job_duration_seconds_count") == 1
    assert _delta(before, after, "deepfake_video_frames_total") == frames
    assert _delta(before, after, "deepfake_video_frame_seconds_total") > 0
    # Queue depth: nothing queued or running any more.
    assert (
        _get(after, "deepfake_jobs_active", state="queued") == _get(after, "deepfake_jobs_active", state="running") == 0
    )
