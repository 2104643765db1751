"""deepfake-api: serve the API, judge images from the shell, evaluate on a labelled folder.

deepfake-api serve [--host H] [--port P] [--workers N] [--model PATH]
deepfake-api predict FILE... [--url URL] [--json]   exit 0: none fake, 1: some fake, 2: error
deepfake-api evaluate DIR [--url URL] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def _predict(args: argparse.Namespace) -> int:
    from deepfake_api.client import ScoreError, make_scorer

    try:
        scorer = make_scorer(args.url, args.model or get_settings().model_path, args.api_key)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, failed, fake = [], False, False
    try:
        for name in args.files:
            path = Path(name)
            try:
                body = scorer.score(path.read_bytes(), path.name)
                fake = fake or body["label"] == "fake"
                rows.append({"file": name, **body})
            except (OSError, ScoreError) as exc:
                failed = True
                rows.append({"file": name, "error": str(exc)})
    finally:
        scorer.close()
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
    else:
        _print_faces(rows)
    return 2 if failed else 1 if fake else 0


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
    p = sub.add_parser("predict", help="judge image files")
    p.add_argument("files", nargs="+")
    p.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000 (default: in-process)")
    p.add_argument("--model", type=Path)
    p.add_argument("--api-key", default=os.environ.get("DEEPFAKE_API_KEY"))
    p.add_argument("--json", action="store_true", help="print the JSON responses")
    p.set_defaults(func=_predict)
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
