"""The cost of `explain` per face, measured in one run: the committed model's `predict_faces` on the
same aligned face crops with and without explanations, interleaved (so a busy machine slows both
alike), at batch sizes 1 and 8.

    python -m bench.explain [--repeats 20] [--threads 1]

Prints ms per face (median over repeats) and the ratio explain / plain at each batch size, and writes
bench/results/explain-<timestamp>.json. Faces are real test crops when ../shared/datasets is there,
else random pixels (the cost does not depend on the content).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api import faces
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import decode_image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
DATASET = ROOT.parent / "shared" / "datasets"


def crops(model: DeepfakeModel, n: int) -> np.ndarray:
    """n aligned face crops from lfw-faceswap reals (or noise without the dataset)."""
    out: list[np.ndarray] = []
    files = sorted((DATASET / "lfw-faceswap" / "real").glob("*.jpg"))[: 4 * n] if DATASET.is_dir() else []
    assert model.finder is not None
    for f in files:
        rgb = decode_image(f.read_bytes()).rgb
        found = model.finder.detect(rgb)
        if found and not found[0].too_small:
            out.append(faces.align_face(rgb, found[0]))
        if len(out) == n:
            break
    rng = np.random.default_rng(0)
    while len(out) < n:
        out.append(rng.integers(0, 256, (faces.CROP_SIZE, faces.CROP_SIZE, 3), dtype=np.uint8))
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime / LiteRT threads")
    args = parser.parse_args()
    model = DeepfakeModel(ROOT / "models" / "model_card.json", threads=args.threads)
    model.load()
    batch = crops(model, 8)
    rows: list[dict[str, Any]] = []
    for n in (1, 8):
        x = batch[:n]
        model.predict_faces(x)  # warm both paths (graph set-up, allocations)
        model.predict_faces(x, explain=True)
        plain, explained = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.predict_faces(x)
            plain.append((time.perf_counter() - t) / n)
            t = time.perf_counter()
            model.predict_faces(x, explain=True)
            explained.append((time.perf_counter() - t) / n)
        p, e = statistics.median(plain) * 1000, statistics.median(explained) * 1000
        rows.append({"batch": n, "plain_ms_per_face": round(p, 2), "explain_ms_per_face": round(e, 2), "ratio": e / p})
    print(f"model {model.name} {model.version}, {args.threads} thread(s), {args.repeats} repeats, medians")
    print(f"{'batch':>5}  {'plain ms/face':>13}  {'explain ms/face':>15}  {'explain/plain':>13}")
    for r in rows:
        print(
            f"{r['batch']:>5}  {r['plain_ms_per_face']:>13.1f}  {r['explain_ms_per_face']:>15.1f}  {r['ratio']:>13.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"explain-{stamp}.json"
    out.write_text(
        json.dumps(
            {"model": {"name": model.name, "version": model.version}, "threads": args.threads, "rows": rows}, indent=2
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
