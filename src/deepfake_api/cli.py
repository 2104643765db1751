"""deepfake-api: serve the API, judge images from the shell, evaluate on a labelled folder.

deepfake-api serve [--host H] [--port P] [--workers N] [--model PATH]
deepfake-api predict FILE_OR_DIR... [--url URL] [--csv F] [--jsonl F] [--json]
                                              images and videos (a video is a job: progress bar,
                                              verdict and top frames)
                                              exit 0: none fake, 1: some fake, 2: some error
deepfake-api worker                           analyse queued videos (DEEPFAKE_JOBS_BACKEND=redis)
deepfake-api evaluate DIR [--url URL] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepfake_api.config import get_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from deepfake_api.server import uvicorn_options

    overrides = {"DEEPFAKE_HOST": args.host, "DEEPFAKE_PORT": args.port, "DEEPFAKE_WORKERS": args.workers}
    overrides["DEEPFAKE_MODEL_PATH"] = args.model
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)  # workers are new processes: they read the environment
    get_settings.cache_clear()
    settings = get_settings()
    with _metrics_dir(settings.workers):
        uvicorn.run(
            "deepfake_api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            **uvicorn_options(settings),
        )
    return 0


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for this run, so that /metrics sums
    every worker's samples (set before the workers start: they inherit it). One given in the
    environment is used and emptied first, as prometheus-client requires; ours is removed after."""
    from deepfake_api.metrics import MULTIPROC_ENV

    if workers <= 1:
        yield
        return
    # Until uvicorn installs its own handler, SIGTERM is a clean exit that still removes the directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    given = os.environ.get(MULTIPROC_ENV)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="deepfake-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"}


def image_files(inputs: list[str]) -> list[Path]:
    """Files as given, and every image file under each folder (sorted, recursively)."""
    return media_files(inputs)[0]


def media_files(inputs: list[str]) -> tuple[list[Path], list[Path]]:
    """(images, videos): files as given (a video by its suffix), and every image and video under
    each folder (sorted, recursively)."""
    images: list[Path] = []
    videos: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(p)
                elif p.suffix.lower() in VIDEO_SUFFIXES:
                    videos.append(p)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            images.append(path)  # a missing or unreadable file is reported in its row
    return images, videos


def _video_row(scorer: Any, path: Path, show_progress: bool) -> dict[str, Any]:
    """Submit one video, follow its job with a progress bar (frames), return its row."""
    from tqdm import tqdm

    from deepfake_api.client import ScoreError

    try:
        job = scorer.submit_video(path)
    except (ScoreError, OSError) as exc:
        return {"file": str(path), "error": str(exc)}
    bar = tqdm(total=None, unit="frame", desc=path.name, file=sys.stderr, disable=not show_progress, mininterval=0.5)

    def progress(j: dict[str, Any]) -> None:
        planned = j["progress"].get("planned")
        if planned and bar.total != planned:
            bar.total = planned
        bar.n = j["progress"]["done"]
        bar.set_postfix_str(j["state"], refresh=True)

    try:
        job = scorer.wait_job(job["id"], progress)
    except ScoreError as exc:
        return {"file": str(path), "error": str(exc)}
    finally:
        bar.close()
    if job["state"] != "done":
        problem = job.get("problem") or {}
        reason = f"{problem.get('title', job['state'])}: {problem.get('detail', '')}".rstrip(": ")
        return {"file": str(path), "error": reason, "job": job}
    return {"file": str(path), "label": job["result"]["label"], "score": job["result"]["score"], "job": job}


def _print_video(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"{row['file']}  error: {row['error']}")
        return
    result = row["job"]["result"]
    score = "-" if result["score"] is None else f"{result['score']:.3f}"
    print(
        f"{row['file']}  video  {result['label']}  P(fake) {score}  "
        f"{result['sampling']['frames_analysed']} frames, {len(result['tracks'])} face track(s)"
    )
    for t in result["tracks"]:
        print(
            f"  track {t['id']}: {t['label']} {t['score']:.3f} over {t['frames']} frames "
            f"({t['first_time_s']:.2f}-{t['last_time_s']:.2f} s)"
        )
    for f in result["top_frames"]:
        print(f"  top frame {f['index']} at {f['time_s']:.2f} s: track {f['track']} P(fake) {f['score']:.3f}")


def _predict(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from deepfake_api.client import ScoreError, make_scorer

    paths, videos = media_files(args.files)
    if not paths and not videos and not args.image_url:
        print("error: no image or video files found", file=sys.stderr)
        return 2
    try:
        scorer = make_scorer(
            args.url, args.model or get_settings().model_path, args.api_key, explain=args.explain, verbose=args.verbose
        )
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    batches = [paths[i : i + args.batch] for i in range(0, len(paths), args.batch)]
    url_batches = [args.image_url[i : i + args.batch] for i in range(0, len(args.image_url), args.batch)]

    def run(batch: list[Path]) -> list[dict[str, Any]]:
        files, rows = [], {}
        for path in batch:
            try:
                files.append((str(path), path.read_bytes()))
            except OSError as exc:
                rows[str(path)] = {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
        try:
            scored = scorer.score_many([(Path(n).name, d) for n, d in files]) if files else []
        except ScoreError as exc:
            scored = [{"error": str(exc)} for _ in files]
        rows.update({name: {"file": name, **body} for (name, _), body in zip(files, scored, strict=True)})
        return [rows[str(p)] for p in batch]

    def run_urls(batch: list[str]) -> list[dict[str, Any]]:
        try:
            return [{"file": u, **body} for u, body in zip(batch, scorer.score_urls(batch), strict=True)]
        except ScoreError as exc:
            return [{"file": u, "error": str(exc)} for u in batch]

    rows: list[dict[str, Any]] = []
    total = len(paths) + len(args.image_url)
    bar = tqdm(total=total, unit="img", file=sys.stderr, disable=args.no_progress or not total, mininterval=0.5)
    video_rows: list[dict[str, Any]] = []
    try:
        # In-process there is one model: concurrency would only interleave the same work.
        workers = max(1, args.concurrency if args.url else 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(run, b) for b in batches] + [pool.submit(run_urls, b) for b in url_batches]
            for job in jobs:  # in order, so rows keep the order of the inputs
                done = job.result()
                rows.extend(done)
                bar.update(len(done))
        bar.close()
        video_rows = [_video_row(scorer, v, not args.no_progress) for v in videos]
    finally:
        bar.close()
        scorer.close()
    failed = any("error" in r for r in rows + video_rows)
    fake = any(r.get("label") == "fake" for r in rows + video_rows)
    if args.csv:
        write_csv(args.csv, rows)
    if args.explain:
        for path in write_overlays(args.csv.parent if args.csv else Path("."), rows):
            print(f"heatmap overlay: {path}", file=sys.stderr)
    if args.jsonl:
        with args.jsonl.open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    if args.json:
        out = rows + [r.get("job") or r for r in video_rows]
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    elif not args.quiet:
        if rows:
            _print_faces(rows)
        for row in video_rows:
            _print_video(row)
    return 2 if failed else 1 if fake else 0


CSV_FIELDS = ["file", "face", "x", "y", "width", "height", "status", "label", "score", "error"]


def write_overlays(folder: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """For each local image with an explained face: `<name>.heatmap.png` in `folder` (beside the CSV),
    the image with every judged face's heatmap and box drawn on it (explain.overlay)."""
    from PIL import Image

    from deepfake_api import explain
    from deepfake_api.preprocess import decode_image

    written: list[Path] = []
    used: set[str] = set()
    for row in rows:
        maps = [f["heatmap"] for f in row.get("faces", []) if f.get("heatmap")]
        source = Path(str(row.get("file", "")))
        if not maps or not source.is_file():
            continue  # no judged face, an error, or an image by URL
        rgb = decode_image(source.read_bytes(), max_pixels=200_000_000, min_side=1).rgb
        out = explain.overlay(rgb, maps)
        out = explain.draw_boxes(out, [(f["box"], f.get("label") or "") for f in row["faces"]])
        name = f"{source.stem}.heatmap.png"
        n = 1
        while name in used:
            n += 1
            name = f"{source.stem}-{n}.heatmap.png"
        used.add(name)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(folder / name)
        written.append(folder / name)
    return written


def csv_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per face (with each detector's score), or one for an image without faces or in error."""
    if "error" in row:
        return [{"file": row["file"], "label": "error", "error": row["error"]}]
    out = []
    for i, f in enumerate(row.get("faces", []), 1):
        b = f["box"]
        line: dict[str, Any] = {
            "file": row["file"],
            "face": i,
            "status": f["status"],
            "label": f["label"] or f["status"],
        }
        line.update({"x": round(b["x"]), "y": round(b["y"]), "width": round(b["width"]), "height": round(b["height"])})
        line["score"] = "" if f["score"] is None else f"{f['score']:.4f}"
        line.update({f"detector:{d['name']}": f"{d['score']:.4f}" for d in f.get("detectors", [])})
        out.append(line)
    return out or [{"file": row["file"], "label": row["label"], "score": ""}]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    lines = [line for r in rows for line in csv_rows(r)]
    detectors = sorted({k for line in lines for k in line if k.startswith("detector:")})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS + detectors, restval="")
        writer.writeheader()
        writer.writerows(lines)


def face_rows(row: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(face, box, label, P(fake)) for one response: one line per face, or one for an image without
    a judged face. A face's label is its verdict, or why it was not judged (too_small, not_judged)."""
    out = []
    for i, f in enumerate(row.get("faces", []), 1):
        b = f["box"]
        box = f"{b['x']:.0f},{b['y']:.0f},{b['width']:.0f}x{b['height']:.0f}"
        label = f["label"] if f["status"] == "judged" else f["status"]
        out.append((str(i), box, label, "-" if f["score"] is None else f"{f['score']:.3f}"))
    if not any(f["status"] == "judged" for f in row.get("faces", [])):
        out.append(("-", "-", row["label"], "-"))
    return out


def _print_faces(rows: list[dict[str, Any]]) -> None:
    """One line per face: file, face number, box (x,y,wxh in the oriented image), label, P(fake)."""
    table = [(r["file"], *line) for r in rows if "error" not in r for line in face_rows(r)]
    header = ("file", "face", "box", "label", "P(fake)")
    widths = [max(len(t[i]) for t in [header, *table]) for i in range(5)]
    width = max(len(r["file"]) for r in rows)
    print("  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        if "error" in r:
            print(f"{r['file']:<{width}}  error: {r['error']}")
            continue
        for line in face_rows(r):
            cells = (r["file"], *line)
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _evaluate(args: argparse.Namespace) -> int:
    from deepfake_api.training.evaluate import run

    run(args.data, url=args.url, model_path=args.model or get_settings().model_path, out=args.out, split=args.split)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from deepfake_api.jobs.worker import check
    from deepfake_api.runtime import run_worker

    if args.check:
        alive, message = check(get_settings())
        print(message, file=sys.stderr)
        return 0 if alive else 1
    return run_worker(get_settings())


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="deepfake-api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument("--model", type=Path, help="model card (model_card.json; the detector files it names lie beside it)")
    s.set_defaults(func=_serve)
    p = sub.add_parser("predict", help="judge image and video files and folders (and images by URL)")
    p.add_argument("files", nargs="*", help="image files, or folders to walk for images")
    p.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000 (default: in-process)")
    p.add_argument("--image-url", action="append", default=[], help="an image on the web, fetched by the service")
    p.add_argument("--batch", type=int, default=8, help="files per /predict/batch request")
    p.add_argument("--concurrency", type=int, default=2, help="batches in flight at once (with --url)")
    p.add_argument("--csv", type=Path, help="write one row per face here")
    p.add_argument("--jsonl", type=Path, help="write one JSON response per line here")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--verbose", action="store_true", help="in-process: the service's own log lines on stderr too")
    p.add_argument("--model", type=Path)
    p.add_argument("--api-key", default=os.environ.get("DEEPFAKE_API_KEY"))
    p.add_argument("--json", action="store_true", help="print the JSON responses")
    p.add_argument(
        "--explain",
        action="store_true",
        help="heatmaps for every judged face; writes <image>.heatmap.png overlays beside the CSV (or here)",
    )
    p.set_defaults(func=_predict)
    w = sub.add_parser("worker", help="analyse queued videos (settings: DEEPFAKE_JOBS_*, DEEPFAKE_REDIS_URL)")
    w.add_argument("--check", action="store_true", help="exit 0 if this host's worker is alive (a healthcheck)")
    w.set_defaults(func=_worker)
    e = sub.add_parser("evaluate", help="score a labelled folder (MANIFEST.csv or real/ and fake/)")
    e.add_argument("data", type=Path)
    e.add_argument("--url")
    e.add_argument("--model", type=Path)
    e.add_argument("--split", default="", help="only this split of reports/data/split.csv (e.g. test)")
    e.add_argument("--out", type=Path, default=Path("reports/eval"))
    e.set_defaults(func=_evaluate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
