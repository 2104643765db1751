"""Cache face crops and frozen-encoder features for every image of a dataset, resumably.

For each manifest row (in an order that interleaves sources and labels, so any prefix is
balanced): decode at full resolution, find the faces, align the most confident one (the
serving path: faces.py), and run the encoder on the crop and, for real faces, on one
self-blended pseudo-fake of it. Results go to shards of `--shard` rows in `--out` (outside
the repository): crops (uint8) and features (float16). A run that is cut off resumes at the
next missing shard. Heads are then fitted on the cache in seconds (training/heads.py).

    python -m deepfake_api.training.features --data ../shared/datasets --out ~/.cache/deepfake-api/features
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from deepfake_api import assets, faces
from deepfake_api.detectors.encoder import ClipEncoder
from deepfake_api.preprocess import decode_image
from deepfake_api.training.data import DEFAULT_DATA_DIR, Item, read_items
from deepfake_api.training.sbi import self_blend

CACHE_LAYERS = tuple(range(12))  # every block: the learned block pooling reads CLS + mean of each


def degrade(crop: np.ndarray, seed: int) -> np.ndarray:
    """A lower-quality copy of a face crop, same label: JPEG re-compression, blur, or a down-up resize
    (alone or two together). Training only: it teaches the heads that sharpness and compression are
    not evidence either way (most genuine photos on the web are small and compressed; most fakes in
    the training sources are clean)."""
    rng = np.random.default_rng(seed)
    out = crop
    ops = rng.choice(3, size=int(rng.integers(1, 3)), replace=False)
    for op in sorted(ops.tolist()):
        if op == 0:
            f = float(rng.uniform(0.3, 0.7))
            side = max(16, round(out.shape[0] * f))
            small = cv2.resize(out, (side, side), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
        elif op == 1:
            out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.6, 1.6)))
    if 2 in ops or rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 80))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)


def interleaved(items: list[Item], seed: int = 0) -> list[Item]:
    """Items ordered round-robin over (source, label) with a seeded shuffle inside each."""
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in sorted(items, key=lambda i: i.file):
        groups[(it.dataset, it.label)].append(it)
    rng = random.Random(seed)
    for key in sorted(groups):
        rng.shuffle(groups[key])
    order, queues = [], [groups[k] for k in sorted(groups)]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop())
    return order


def face_crop(data: bytes, detector: faces.FaceDetector) -> tuple[np.ndarray | None, int, float]:
    """The serving face path for one training image: (crop of its most confident face or None, faces found, score)."""
    rgb = decode_image(data, max_pixels=200_000_000, min_side=1).rgb
    found = detector.detect(rgb)
    if not found:
        return None, 0, 0.0
    return faces.align_face(rgb, found[0]), len(found), found[0].score


def seed_of(sha: str) -> int:
    return int(hashlib.sha256(("sbi:" + sha).encode()).hexdigest()[:8], 16)


def cache_shard(rows: list[Item], detector: faces.FaceDetector, encoder: ClipEncoder, path: Path) -> None:
    crops, n_faces, det_score, sbi = [], [], [], []
    for it in rows:
        crop, n, s = face_crop(it.path.read_bytes(), detector)
        crops.append(crop if crop is not None else np.zeros((faces.CROP_SIZE,) * 2 + (3,), np.uint8))
        n_faces.append(n)
        det_score.append(s)
        sbi.append(crop is not None and it.label == "real")
    crops_arr = np.stack(crops)
    found = np.array(n_faces) > 0
    sbi_mask = np.array(sbi)
    blended = [self_blend(c, seed_of(it.sha256)) for c, it, m in zip(crops, rows, sbi, strict=True) if m]
    # The last shards of the interleaved order may hold fakes only: no real face, no pseudo-fake.
    sbi_crops = np.stack(blended) if blended else np.zeros((0, faces.CROP_SIZE, faces.CROP_SIZE, 3), np.uint8)
    feats = _encode(encoder, crops_arr[found]) if found.any() else {}
    aug_crops = (
        np.stack([degrade(c, seed_of("aug:" + it.sha256)) for c, it, f in zip(crops, rows, found, strict=True) if f])
        if found.any()
        else np.zeros((0, faces.CROP_SIZE, faces.CROP_SIZE, 3), np.uint8)
    )
    aug_feats = _encode(encoder, aug_crops) if len(aug_crops) else {}
    sbi_feats = _encode(encoder, sbi_crops) if len(sbi_crops) else {}
    np.savez(
        path.with_suffix(".tmp.npz"),
        files=np.array([it.file for it in rows]),
        sha256=np.array([it.sha256 for it in rows]),
        n_faces=np.array(n_faces),
        det_score=np.array(det_score, np.float32),
        crops=crops_arr,
        sbi_of=np.flatnonzero(sbi_mask),
        sbi_crops=sbi_crops,
        **{f"f_{k}": v for k, v in feats.items()},
        **{f"sbi_{k}": v for k, v in sbi_feats.items()},
        aug_crops=aug_crops,
        **{f"aug_{k}": v for k, v in aug_feats.items()},
    )
    path.with_suffix(".tmp.npz").rename(path)


def _encode(encoder: ClipEncoder, crops: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for i in range(0, len(crops), batch):
        for k, v in encoder.features(crops[i : i + batch]).items():
            parts[k].append(v.astype(np.float16))
    return {k: np.concatenate(v) for k, v in parts.items()}


FLIP_LAYERS = (3, 5, 7, 9, 11)  # what the served linear head reads


def cache_flipped(cache_dir: Path, encoder: ClipEncoder) -> None:
    """Features of the mirrored face crop of every cached face, beside the shards as flip-NNNN.npz
    (for measuring flip test-time augmentation, training/variants.py --variant flip); resumable."""
    started = time.monotonic()
    shards = sorted(p for p in cache_dir.glob("shard-*.npz") if ".spectrum" not in p.name)
    for i, shard in enumerate(shards):
        out = shard.with_name(shard.name.replace("shard-", "flip-"))
        if out.exists():
            continue
        d = np.load(shard)
        found = d["n_faces"] > 0
        crops = d["crops"][found][:, :, ::-1]
        feats = _encode(encoder, np.ascontiguousarray(crops)) if len(crops) else {}
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, files=d["files"][found], **{f"f_{k}": v for k, v in feats.items()})
        tmp.rename(out)
        sys.stderr.write(f"{i + 1}/{len(shards)} shards mirrored, {time.monotonic() - started:.0f} s\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shard", type=int, default=128)
    p.add_argument("--limit", type=int, default=0, help="stop after this many rows (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flip", action="store_true", help="only add the mirrored crops' features to a finished cache")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.flip:
        clip = ClipEncoder(
            assets.path("clip"), layers=FLIP_LAYERS, sha256=assets.ASSETS["clip"].sha256, threads=args.threads
        )
        cache_flipped(args.out, clip)
        return 0
    rows = interleaved(read_items(args.data))
    if args.limit:
        rows = rows[: args.limit]
    detector = faces.FaceDetector(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    encoder = ClipEncoder(
        assets.path("clip"), layers=CACHE_LAYERS, sha256=assets.ASSETS["clip"].sha256, threads=args.threads
    )
    started = time.monotonic()
    for start in range(0, len(rows), args.shard):
        path = args.out / f"shard-{start // args.shard:04d}.npz"
        if path.exists():
            continue
        cache_shard(rows[start : start + args.shard], detector, encoder, path)
        done = min(start + args.shard, len(rows))
        sys.stderr.write(f"{done}/{len(rows)} rows cached, {time.monotonic() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
