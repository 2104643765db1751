"""Video analysis speed, measured in one run through the real app (in process, embedded worker):
sampled frames per second, seconds of analysis per minute of video, and how that compares with
judging the same frames as images through POST /predict, and with decoding alone.

    python -m bench.video [--seconds 30] [--fps 25]

Workloads: a 640x360 clip with one face, a 1920x1080 clip with three faces (real photos from
../shared/datasets composed onto canvases, moving a little each frame). Prints a table and writes
bench/results/video-<timestamp>.json. Run it on an idle machine: the numbers are seconds of CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from tests.conftest import wait_ready
from tests.utils.faces import face_jpeg
from tests.utils.videos import canvas_with, write_video

from deepfake_api import video
from deepfake_api.app import create_app
from deepfake_api.config import Settings
from deepfake_api.jobs.video_job import limits_of

RESULTS = Path(__file__).with_name("results")


def _tile(i: int, height: int) -> Image.Image:
    img = Image.open(io.BytesIO(face_jpeg(i))).convert("RGB")
    return img.resize((round(img.width * height / img.height), height), Image.LANCZOS)


def workloads(seconds: int, fps: int) -> dict[str, tuple[bytes, float]]:
    out = {}
    for name, size, places, height in (
        ("640x360, 1 face", (640, 360), [(200, 40)], 260),
        ("1920x1080, 3 faces", (1920, 1080), [(150, 300), (800, 250), (1450, 350)], 400),
    ):
        tiles = [_tile(i, height) for i in range(len(places))]
        frames = [
            canvas_with([(t, (x + (k % 10) * 3, y)) for t, (x, y) in zip(tiles, places, strict=True)], size=size)
            for k in range(seconds * fps)
        ]
        out[name] = (write_video(frames, fps=fps, crf=23), float(seconds))
    return out


def decode_only(path: Path, settings: Settings) -> tuple[float, int]:
    """Seconds to decode and sample the file as the worker does, and the frames sampled."""
    info = video.probe(path, limits_of(settings))
    step = video.sample_times(info.duration_s, settings.video_sample_fps, settings.video_max_frames)
    started = time.perf_counter()
    n = sum(1 for _ in video.sample_frames(path, info, limits_of(settings), step, settings.video_max_frames))
    return time.perf_counter() - started, n


def run(seconds: int, fps: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-video-"))
    settings = Settings(jobs_dir=scratch / "jobs", log_json=True, log_level="WARNING")
    rows = []
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout=300)
        for name, (data, duration) in workloads(seconds, fps).items():
            path = scratch / "clip.mp4"
            path.write_bytes(data)
            decode_s, sampled = decode_only(path, settings)
            r = client.post("/videos?wait=3600", files={"file": ("clip.mp4", data)})
            job = r.json()
            while job["state"] in ("queued", "running"):
                time.sleep(0.2)
                job = client.get(f"/jobs/{job['id']}").json()
            assert job["state"] == "done", job
            res = job["result"]
            analysis_s = job["finished_at"] - job["started_at"]
            frames = res["sampling"]["frames_analysed"]
            # The same sampled frames as images, one request at a time through /predict.
            info = video.probe(path, limits_of(settings))
            step = res["sampling"]["step_s"]
            images = [_jpeg(s.rgb) for s in video.sample_frames(path, info, limits_of(settings), step, frames)]
            started = time.perf_counter()
            for img in images:
                assert client.post("/predict", files={"file": ("f.jpg", img)}).status_code == 200
            predict_s = time.perf_counter() - started
            rows.append(
                {
                    "workload": name,
                    "video_s": duration,
                    "frames": frames,
                    "tracks": len(res["tracks"]),
                    "analysis_s": round(analysis_s, 2),
                    "frames_per_s": round(frames / analysis_s, 2),
                    "s_per_min_of_video": round(analysis_s / duration * 60, 1),
                    "decode_only_s": round(decode_s, 2),
                    "decode_share": round(decode_s / analysis_s, 3),
                    "predict_images_per_s": round(len(images) / predict_s, 2),
                    "video_vs_predict": round((frames / analysis_s) / (len(images) / predict_s), 3),
                    "decoded_sampled": sampled,
                }
            )
    sampling = {"sample_fps": settings.video_sample_fps, "max_frames": settings.video_max_frames}
    return {"settings": sampling, "rows": rows}


def _jpeg(rgb: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    report = run(args.seconds, args.fps)
    cols = [
        "workload",
        "frames",
        "tracks",
        "analysis_s",
        "frames_per_s",
        "s_per_min_of_video",
        "decode_share",
        "predict_images_per_s",
        "video_vs_predict",
    ]
    print(" | ".join(cols))
    for row in report["rows"]:
        print(" | ".join(str(row[c]) for c in cols))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"video-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
