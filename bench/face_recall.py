"""Face detector recall and cost per source of ../shared/datasets, as served (retry on a padded copy).

    python -m bench.face_recall [--per-source 150]

Every image of the dataset holds a face, so recall = share of images where at least one is found.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict

from deepfake_api import assets, faces
from deepfake_api.preprocess import decode_image
from deepfake_api.training.data import DEFAULT_DATA_DIR, read_items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-source", type=int, default=150)
    args = p.parse_args(argv)
    by_source = defaultdict(list)
    items = read_items(DEFAULT_DATA_DIR)
    random.Random(0).shuffle(items)
    for it in items:
        by_source[it.dataset].append(it)
    detector = faces.FaceDetector(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    print("| source | found | recall | detect ms (median) |\n|---|---|---|---|")
    for source, rows in sorted(by_source.items()):
        found, times = 0, []
        for it in rows[: args.per_source]:
            rgb = decode_image(it.path.read_bytes(), max_pixels=10**9).rgb
            t = time.perf_counter()
            found += bool(detector.detect(rgb))
            times.append((time.perf_counter() - t) * 1000)
        n = min(len(rows), args.per_source)
        print(f"| {source} | {found}/{n} | {found / n:.3f} | {sorted(times)[len(times) // 2]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
