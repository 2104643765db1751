"""Video frames against image requests (issue 27, defect 16), measured in one run on the real
service (`deepfake-api serve` subprocesses, embedded worker): how long a short clip takes alone and
under a steady image load, and what the clip does to the images' latency.

    python -m bench.priority [--seconds 6] [--clients 8] [--bounds 200,60000]

For each frame bound (`DEEPFAKE_VIDEO_FRAME_MAX_WAIT_MS`; 60000 means frames only ever fill the
room images leave, the strictest "images first") a fresh service is started and measured three
ways: the clip alone, images alone (`--clients` closed-loop clients), and the clip while the
clients run. Prints seconds per clip, the ratio loaded / alone, image p50/p95 with and without the
clip, and writes bench/results/priority-<timestamp>.json. Ratios are from this run only (the
machine's load changes between runs); not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from tests.utils.faces import face_jpeg
from tests.utils.server import free_port, serve, wait_ready
from tests.utils.videos import canvas_with, write_video

RESULTS = Path(__file__).with_name("results")


def clip(seconds: int, fps: int = 8) -> bytes:
    tile = Image.open(io.BytesIO(face_jpeg(0))).convert("RGB").resize((220, 220))
    frames = [canvas_with([(tile, (200 + (k % 10) * 3, 60))], size=(640, 360)) for k in range(seconds * fps)]
    return write_video(frames, fps=fps, crf=23)


def video_seconds(url: str, data: bytes) -> float:
    started = time.perf_counter()
    job = httpx.post(url + "/videos", files={"file": ("clip.mp4", data)}, timeout=120).json()
    while job["state"] in ("queued", "running"):
        time.sleep(0.1)
        job = httpx.get(url + job["links"]["self"], timeout=30).json()
    assert job["state"] == "done", job
    return time.perf_counter() - started


class ImageLoad:
    """`clients` threads, each posting the next image as soon as the last is answered."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.clients = url, clients
        self.images = [face_jpeg(i) for i in range(8)]
        self.latencies: list[float] = []
        self.marks: list[tuple[float, float]] = []  # (time answered, latency)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, i: int) -> None:
        with httpx.Client(timeout=120) as c:
            k = i
            while not self._stop.is_set():
                t0 = time.perf_counter()
                r = c.post(self.url + "/predict", files={"file": ("f.jpg", self.images[k % len(self.images)])})
                if r.status_code == 200:
                    self.marks.append((time.perf_counter(), time.perf_counter() - t0))
                k += self.clients

    def __enter__(self) -> ImageLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=180)

    def between(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.marks if start <= at <= end]


def _p(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q) - 1] * 1000, 1) if len(values) >= 2 else float("nan")


def measure(bound_ms: int, data: bytes, clients: int, warm_s: float) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "DEEPFAKE_VIDEO_FRAME_MAX_WAIT_MS": str(bound_ms),
        "DEEPFAKE_LOG_LEVEL": "WARNING",
        "DEEPFAKE_JOBS_DIR": tempfile.mkdtemp(prefix="bench-priority-"),
    }
    proc = serve(port, env=env)
    try:
        wait_ready(proc, url, timeout=300)
        alone = video_seconds(url, data)
        with ImageLoad(url, clients) as load:
            time.sleep(warm_s)
            t0 = time.perf_counter()
            time.sleep(max(alone, 5.0))  # images alone, as long as the clip took alone
            t1 = time.perf_counter()
            loaded = video_seconds(url, data)
            t2 = time.perf_counter()
        images_alone, images_with_clip = load.between(t0, t1), load.between(t1, t2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "frame_max_wait_ms": bound_ms,
        "clip_alone_s": round(alone, 2),
        "clip_under_image_load_s": round(loaded, 2),
        "clip_ratio_loaded_over_alone": round(loaded / alone, 2),
        "images_alone": {"n": len(images_alone), "p50_ms": _p(images_alone, 50), "p95_ms": _p(images_alone, 95)},
        "images_with_clip": {
            "n": len(images_with_clip),
            "p50_ms": _p(images_with_clip, 50),
            "p95_ms": _p(images_with_clip, 95),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=6, help="clip length (8 fps, sampled at the service's rate)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--bounds", default="200,60000", help="frame bounds (ms) to compare, comma-separated")
    p.add_argument("--warm", type=float, default=3.0, help="seconds of image load before measuring")
    args = p.parse_args()
    data = clip(args.seconds)
    rows = [measure(int(b), data, args.clients, args.warm) for b in args.bounds.split(",")]
    for r in rows:
        print(
            f"bound {r['frame_max_wait_ms']:>6} ms: clip {r['clip_alone_s']:6.2f} s alone, "
            f"{r['clip_under_image_load_s']:6.2f} s under {args.clients} image clients "
            f"(x{r['clip_ratio_loaded_over_alone']}); images p50/p95 {r['images_alone']['p50_ms']}/"
            f"{r['images_alone']['p95_ms']} ms alone, {r['images_with_clip']['p50_ms']}/"
            f"{r['images_with_clip']['p95_ms']} ms with the clip"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"priority-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"seconds": args.seconds, "clients": args.clients, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
