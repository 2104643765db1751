"""POST /videos?explain=true through the real app, queue and model: every judged face of the job's
kept top frames has a heatmap (14 x 14 over the aligned crop, values in [0, 1], a transform into
the upright frame, the method named); a job without explain has none; `explain=maybe` is a 422."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from tests.utils.problems import assert_problem
from tests.utils.videos import canvas_with, write_video

FPS = 4


def _clip(fake_tile: Image.Image, real_tile: Image.Image) -> bytes:
    frames = [canvas_with([(real_tile, (10, 30)), (fake_tile, (330, 30))], size=(660, 360)) for _ in range(5)]
    return write_video(frames, fps=FPS)


def _check_heatmap(heat: dict[str, Any]) -> None:
    grid = heat["grid"]
    assert len(grid) == 14 and all(len(row) == 14 for row in grid)
    assert all(0.0 <= v <= 1.0 for row in grid for v in row)
    assert heat["crop_size"] == 224
    assert len(heat["transform"]) == 2 and all(len(row) == 3 for row in heat["transform"])
    assert heat["method"]
    assert heat["max_contribution"] >= 0


def test_explained_job_has_a_heatmap_on_every_judged_face_of_its_top_frames(
    jobs_client: TestClient, fake_tile: Image.Image, real_tile: Image.Image
) -> None:
    data = _clip(fake_tile, real_tile)
    r = jobs_client.post("/videos", params={"wait": 120, "explain": "true"}, files={"file": ("clip.mp4", data)})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "done", job
    result = job["result"]
    frames = {f["index"]: f for f in result["frames"]}
    tops = [t for t in result["top_frames"] if t["image"]]
    assert tops, result["top_frames"]
    judged = 0
    for top in tops:
        faces = top["faces"]
        assert faces is not None
        # The same faces as the frame's, in the same order, with the first pass's scores.
        assert [(f["track"], f["status"], f["score"]) for f in faces] == [
            (f["track"], f["status"], f["score"]) for f in frames[top["index"]]["faces"]
        ]
        for face in faces:
            if face["status"] == "judged":
                _check_heatmap(face["heatmap"])
                judged += 1
            else:
                assert face["heatmap"] is None
    assert judged >= len(tops)
    # The sampled frames themselves stay as they were: no heatmaps there.
    assert all(f.get("heatmap") is None for fr in result["frames"] for f in fr["faces"])


def test_job_without_explain_has_no_heatmaps(
    jobs_client: TestClient, fake_tile: Image.Image, real_tile: Image.Image
) -> None:
    data = _clip(fake_tile, real_tile)
    job = jobs_client.post("/videos?wait=120", files={"file": ("clip.mp4", data)}).json()
    assert job["state"] == "done", job
    for top in job["result"]["top_frames"]:
        assert not top.get("faces")
        assert top["image"]


def test_explain_on_videos_is_a_strict_boolean(jobs_client: TestClient, real_tile: Image.Image) -> None:
    data = write_video([canvas_with([(real_tile, (100, 30))])] * 2, fps=FPS)
    r = jobs_client.post("/videos?explain=maybe", files={"file": ("clip.mp4", data)})
    problem = assert_problem(r, 422, "validation-error")
    assert "explain" in str(problem.get("errors"))
