"""Does the int8 graph's activation rounding in the last block hide signal? (issue 25)

The served encoder is int8 with one activation scale per tensor; the last block's inputs span
|h| up to ~84, so small channels are rounded coarsely. This check computes, for a stratified
sample of cached faces (at most `--cap` per source and label), the CLS token and the mean patch
token after block 11 twice: from the int8 graph (the cache) and from the fp32 block
(`clip_weights.block_forward`, dequantised weights, no activation rounding) on the graph's own
block-10 states; then fits the same linear probe on each, leave-one-source-out on those rows.

    python -m deepfake_api.training.quant_check --cache <features> [--cap 350]

Prints one JSON line per feature: LOSO AUC per source, mean, pooled AUC (docs/model/EXPERIMENTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a measuring run on the feature cache
    from deepfake_api import assets
    from deepfake_api.detectors.encoder import ClipEncoder
    from deepfake_api.training import variants
    from deepfake_api.training.artefact import load_crops
    from deepfake_api.training.clip_weights import block_forward, block_weights
    from deepfake_api.training.heads import Cache, Head, load_cache

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--cap", type=int, default=350)
    args = p.parse_args(argv)
    cache = load_cache(args.cache, args.split, ("l11_cls", "l11_mean"))
    rng = np.random.default_rng(0)
    picked: list[int] = []
    for s in cache.sources:
        for label in (0, 1):
            idx = np.flatnonzero((cache.dataset == s) & (cache.y == label))
            picked += rng.permutation(idx)[: args.cap].tolist()
    rows = np.array(sorted(picked))
    crops = load_crops(cache).faces
    enc = ClipEncoder(assets.path("clip"), layers=(10,), sha256=assets.ASSETS["clip"].sha256, threads=2)
    w = block_weights(assets.path("clip"), 11)
    cls, mean = [], []
    t0 = time.monotonic()
    for n, i in enumerate(rows):
        f = enc.features(crops[i : i + 1], tokens=True)
        h = block_forward(np.concatenate([f["l10_cls"][:, None], f["l10_tokens"]], 1), w)
        cls.append(h[:, 0])
        mean.append(h[:, 1:].mean(1))
        if n % 500 == 0:
            sys.stderr.write(f"{n}/{len(rows)} faces, {time.monotonic() - t0:.0f} s\n")
    fp32 = {"l11_cls": np.concatenate(cls), "l11_mean": np.concatenate(mean)}
    i8 = cache.feats["l11_cls"][rows]
    cos = (i8 * fp32["l11_cls"]).sum(1) / np.linalg.norm(i8, axis=1) / np.linalg.norm(fp32["l11_cls"], axis=1)
    sys.stdout.write(
        json.dumps({"faces": len(rows), "cls_cosine_min_mean": [float(cos.min()), float(cos.mean())]}) + "\n"
    )
    for key in ("l11_cls", "l11_mean"):
        for name, x in (("int8", cache.feats[key][rows]), ("fp32", fp32[key])):
            sub = Cache(
                files=cache.files[rows],
                dataset=cache.dataset[rows],
                y=cache.y[rows],
                split=cache.split[rows],
                feats={key: x},
                sbi_parent=np.zeros(0, int),
                sbi_feats={},
                crops=[],
            )

            def fit(mask: np.ndarray, c: float, sub: Cache = sub, key: str = key) -> Head:
                return variants._probe(sub, mask, (key,), c, False)

            row = variants.summarise(f"{name} {key}", variants.fold_parts(sub, fit, grid=(0.001, 0.01)))
            sys.stdout.write(json.dumps({k: row[k] for k in ("variant", "loso", "loso_mean", "pooled_auc")}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
