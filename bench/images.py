"""The fixed image set every measurement uses: real dataset JPEGs when present, else generated ones.

The mix follows ../shared/datasets: 600x600 (roboflow-ciplab), 250x250 (lfw-faceswap) and
224x224 (dfdc-faces) JPEGs, real and fake in equal numbers, picked by a fixed stride so every
run (and every machine) scores the same files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATASET_DIR = ROOT.parent / "shared" / "datasets"
SOURCES = {"roboflow-ciplab": 600, "lfw-faceswap": 250, "dfdc-faces": 224}


def dataset_images(per_source: int, dataset_dir: Path = DATASET_DIR) -> list[Path]:
    """`per_source` files from each source (half real, half fake), interleaved by source."""
    columns: list[list[Path]] = []
    for source in SOURCES:
        picked: list[Path] = []
        for label in ("real", "fake"):
            files = sorted((dataset_dir / source / label).glob("*.jpg"))
            want = per_source // 2 if label == "real" else per_source - per_source // 2
            if len(files) < want:
                return []
            stride = len(files) // want
            picked += files[::stride][:want]
        columns.append(picked)
    return [path for row in zip(*columns, strict=True) for path in row]


def generated_images(per_source: int, out_dir: Path) -> list[Path]:
    """Textured JPEGs of the dataset's three sizes, for machines without the dataset."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(per_source):
        for size in SOURCES.values():
            base = np.linspace(0, 255, size, dtype=np.float32)[None, :, None]
            arr = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=90)
            path = out_dir / f"gen_{size}_{i:03d}.jpg"
            path.write_bytes(buf.getvalue())
            paths.append(path)
    return paths


def image_set(count: int, scratch: Path) -> tuple[list[Path], str]:
    """About `count` images (a multiple of 3) and a one-line description of where they came from."""
    per_source = max(2, count // len(SOURCES))
    paths = dataset_images(per_source)
    if paths:
        return (
            paths,
            f"{len(paths)} dataset JPEGs from {DATASET_DIR} ({per_source} per source, 600/250/224 px)",
        )
    paths = generated_images(per_source, scratch / "images")
    return paths, f"{len(paths)} generated JPEGs (no dataset at {DATASET_DIR}; 600/250/224 px)"
