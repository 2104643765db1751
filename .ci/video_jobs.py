"""Video-job checks of the container stage, through the proxy (run by .ci/container.sh).

    video_jobs.py URL PROBE quick                     a short clip, answered within ?wait=
    video_jobs.py URL PROBE submit                    a 20 s clip; prints the job id
    video_jobs.py URL PROBE wait-running ID           until a worker has done 5 frames of it
    video_jobs.py URL PROBE wait-done ID --attempts N until done, started N times

PROBE is a face image: the clip shows it moving slightly on a grey canvas. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.utils.videos import canvas_with, write_video  # noqa: E402


def clip(probe: Path, frames: int) -> bytes:
    face = Image.open(probe).convert("RGB")
    face.thumbnail((300, 300))
    return write_video([canvas_with([(face, (60 + (i % 5) * 4, 30))]) for i in range(frames)], fps=4, crf=23)


def job(url: str, job_id: str) -> dict:
    r = httpx.get(f"{url}/jobs/{job_id}", timeout=10)
    if r.status_code != 200:
        sys.exit(f"GET /jobs/{job_id} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def summary(j: dict) -> str:
    res = j.get("result") or {}
    tracks = [(t["label"], t["score"]) for t in res.get("tracks", [])]
    took = (j["finished_at"] or 0) - (j["started_at"] or 0)
    return (
        f"job {j['id'][:8]} {j['state']} attempts={j['attempts']} label={res.get('label')} "
        f"frames={res.get('sampling', {}).get('frames_analysed')} tracks={tracks} analysis {took:.1f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("probe", type=Path)
    ap.add_argument("action", choices=["quick", "submit", "wait-running", "wait-done"])
    ap.add_argument("job", nargs="?")
    ap.add_argument("--attempts", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    if a.action in ("quick", "submit"):
        data = clip(a.probe, 8 if a.action == "quick" else 80)
        wait = "?wait=60" if a.action == "quick" else ""
        r = httpx.post(f"{a.url}/videos{wait}", files={"file": ("clip.mp4", data, "video/mp4")}, timeout=120)
        if r.status_code not in (200, 202):
            sys.exit(f"POST /videos answered {r.status_code}: {r.text[:300]}")
        if a.action == "submit":
            print(r.json()["id"])
            return 0
        j = r.json()
        if r.status_code != 200 or j["state"] != "done" or j["result"]["label"] == "no_face":
            sys.exit(f"POST /videos?wait=60: {r.status_code} {j['state']} {j.get('result') or j.get('problem')}")
        print(f"POST /videos?wait=60 -> 200: {summary(j)}", file=sys.stderr)
        return 0
    while time.monotonic() < deadline:
        j = job(a.url, a.job)
        if a.action == "wait-running" and j["state"] == "running" and j["progress"]["done"] >= 5:
            print(f"job {a.job[:8]} running: {j['progress']}", file=sys.stderr)
            return 0
        if j["state"] in ("done", "failed", "cancelled"):
            if a.action == "wait-done" and j["state"] == "done" and j["attempts"] >= a.attempts:
                print(summary(j), file=sys.stderr)
                return 0
            sys.exit(f"job ended unexpectedly: {summary(j)} {j.get('problem')}")
        time.sleep(0.5)
    sys.exit(f"timed out after {a.timeout} s: {summary(job(a.url, a.job))}")


if __name__ == "__main__":
    raise SystemExit(main())
