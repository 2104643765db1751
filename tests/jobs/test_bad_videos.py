"""Bad videos: each a clear 4xx at upload (or a failed job with a stable type), never a 5xx."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.utils.problems import assert_problem
from tests.utils.videos import write_video


def _clip(w: int = 320, h: int = 240, n: int = 4, **kw: object) -> bytes:
    return write_video([np.full((h, w, 3), 100 + i, np.uint8) for i in range(n)], **kw)  # type: ignore[arg-type]


def _audio_only() -> bytes:
    import io

    import av

    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4")
    stream = out.add_stream("aac", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    frame.sample_rate = 16000
    for _ in range(8):
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()
    return buf.getvalue()


def _ten_hour_header() -> bytes:
    frames = [np.zeros((64, 64, 3), np.uint8)] * 2
    return write_video(frames, fps=10, times=[0.0, 36000.0])


CASES = {
    "text claiming mp4": (b"hello, this is not a video at all\n" * 10, 415, "unsupported-video-type"),
    "truncated mp4": (None, 422, "invalid-video"),
    "audio only": (None, 422, "no-video-stream"),
    "ten-hour header": (None, 413, "video-too-long"),
    "tiny frames": (None, 422, "video-too-small"),
    "8K frames": (None, 413, "video-too-large"),
}


def _data(name: str) -> bytes:
    if name == "truncated mp4":
        return _clip()[:600]
    if name == "audio only":
        return _audio_only()
    if name == "ten-hour header":
        return _ten_hour_header()
    if name == "tiny frames":
        return _clip(16, 16, codec="mpeg4", fmt="matroska")
    if name == "8K frames":
        return _clip(7680, 4320, n=1, codec="mpeg4", fmt="matroska")
    data, _, _ = CASES[name]
    assert data is not None
    return data


@pytest.mark.parametrize("name", list(CASES))
def test_bad_video_is_a_clear_4xx(jobs_client: TestClient, name: str) -> None:
    _, status, slug = CASES[name]
    r = jobs_client.post("/videos", files={"file": ("clip.mp4", _data(name))})
    assert_problem(r, status, slug)


def test_no_file_and_empty_file(jobs_client: TestClient) -> None:
    assert_problem(jobs_client.post("/videos", files={"other": ("a.mp4", b"x")}), 400, "invalid-upload")
    assert_problem(jobs_client.post("/videos", files={"file": ("a.mp4", b"")}), 400, "invalid-upload")


def test_a_face_less_video_is_no_face(jobs_client: TestClient) -> None:
    job = jobs_client.post("/videos?wait=60", files={"file": ("grey.mp4", _clip())}).json()
    assert job["state"] == "done" and job["result"]["label"] == "no_face" and job["result"]["score"] is None


def test_nothing_is_left_in_the_spool(jobs_client: TestClient) -> None:
    settings = jobs_client.app.state.settings  # type: ignore[attr-defined]
    jobs_client.post("/videos?wait=60", files={"file": ("grey.mp4", _clip())})
    jobs_client.post("/videos", files={"file": ("clip.mp4", _data("truncated mp4"))})
    assert list((settings.jobs_dir / "spool").iterdir()) == []
