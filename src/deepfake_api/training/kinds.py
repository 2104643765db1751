"""The kind head: what kind of manipulation a fake face looks like, from the cached CLIP features.

A multinomial logistic regression (detectors/kind.py serves it) on the fakes of the training split
(and their lower-quality copies), every (source, kind) cell weighing the same; C on validation.
Its own leave-one-source-out table answers "does it name the kind of a source it never saw?";
`unknown_below` is chosen on those hold-outs (the answer is "unknown" when no kind is that likely).

    python -m deepfake_api.training.kinds --cache ~/.cache/deepfake-api/features --out models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from deepfake_api.detectors.clip_head import design
from deepfake_api.detectors.kind import KindHead
from deepfake_api.training.heads import Cache, _balanced_weights, load_cache

KINDS = ("face_swap", "reenactment", "gan_generated", "diffusion_generated", "edited_photo")
KEYS = ("l3_mean", "l6_mean", "l9_mean", "l11_cls")
C_GRID = (0.001, 0.01, 0.1)
UNKNOWN_GRID = (0.4, 0.5, 0.6, 0.7, 0.8)

# Which kind each source's fakes are (ffpp by the file name's method prefix).
SOURCE_KIND = {
    "dfdc-faces": "face_swap",
    "lfw-faceswap": "face_swap",
    "stylegan3": "gan_generated",
    "ffhq-gan": "gan_generated",
    "sd-portraits": "diffusion_generated",
    "celebahq-pairs": "edited_photo",
    "roboflow-ciplab": "edited_photo",
}
FFPP_KIND = {"deepfakes": "face_swap", "faceswap": "face_swap", "face2face": "reenactment"}


def kind_of(dataset: str, file: str) -> str | None:
    """The kind of a fake face, or None for a source whose kind is not known."""
    if dataset == "ffpp-faces":
        return FFPP_KIND.get(Path(file).name.split("_")[0])
    return SOURCE_KIND.get(dataset)


def labels(cache: Cache) -> np.ndarray:
    """Kind index per cached face; -1 for real faces and unknown kinds."""
    out = np.full(len(cache.y), -1)
    for i, (d, f, y) in enumerate(zip(cache.dataset, cache.files, cache.y, strict=True)):
        k = kind_of(str(d), str(f)) if y == 1 else None
        if k is not None:
            out[i] = KINDS.index(k)
    return out


def fit(cache: Cache, kind: np.ndarray, train: np.ndarray, c: float) -> dict[str, Any]:
    """The JSON spec of a kind head fitted on the fakes in `train` (with their degraded copies)."""
    m = train & (kind >= 0)
    x = design(cache.feats, KEYS)[m]
    k, g = kind[m], cache.dataset[m]
    if all(key in cache.aug_feats for key in KEYS):
        x = np.concatenate([x, design(cache.aug_feats, KEYS)[m]])
        k, g = np.concatenate([k, k]), np.concatenate([g, g])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    present = sorted(set(k.tolist()))
    lr = LogisticRegression(C=c, max_iter=3000)
    lr.fit((x - mean) / scale, k, sample_weight=_balanced_weights(k, g))
    coef = np.full((len(KINDS), x.shape[1]), 0.0)
    intercept = np.full(len(KINDS), -30.0)  # a kind absent from training is never likely
    for row, idx in enumerate(lr.classes_ if len(present) > 2 else present):
        coef[idx] = lr.coef_[row] if len(present) > 2 else (lr.coef_[0] * (1 if row else -1) / 2)
        intercept[idx] = lr.intercept_[row] if len(present) > 2 else (lr.intercept_[0] * (1 if row else -1) / 2)
    return {
        "kinds": list(KINDS),
        "keys": list(KEYS),
        "layer_norm": True,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
        "C": c,
        "unknown_below": 0.5,
    }


def accuracy(cache: Cache, kind: np.ndarray, spec: dict[str, Any], mask: np.ndarray) -> float:
    m = mask & (kind >= 0)
    p = KindHead(spec).probabilities(cache.feats)[m]
    return float((p.argmax(1) == kind[m]).mean()) if m.any() else 0.0


def choose(cache: Cache, kind: np.ndarray, train: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    best: tuple[float, dict[str, Any]] | None = None
    for c in C_GRID:
        spec = fit(cache, kind, train, c)
        acc = accuracy(cache, kind, spec, val)
        if best is None or acc > best[0]:
            best = (acc, spec)
    assert best is not None
    return best[1]


def loso(cache: Cache, kind: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per source with fakes: held out, what the head trained without it calls its fakes."""
    out: dict[str, dict[str, Any]] = {}
    for src in cache.sources:
        held = (cache.dataset == src) & (kind >= 0)
        if not held.any():
            continue
        others = cache.dataset != src
        spec = choose(cache, kind, others & (cache.split == "train"), others & (cache.split == "val"))
        p = KindHead(spec).probabilities(cache.feats)[held]
        truth = kind[held]
        out[src] = {
            "fakes": int(held.sum()),
            "true_kinds": {KINDS[k]: int((truth == k).sum()) for k in sorted(set(truth.tolist()))},
            "kind_seen_in_training": bool(np.isin(truth, kind[others & (kind >= 0)]).all()),
            "p": p,
            "truth": truth,
        }
    return out


def choose_unknown(held: dict[str, dict[str, Any]]) -> float:
    """The threshold under which the answer is "unknown": the one maximising, averaged over hold-outs,
    (named right) - 2 x (named wrong): a wrong kind costs more than no kind."""
    best = (-np.inf, UNKNOWN_GRID[-1])
    for t in UNKNOWN_GRID:
        gains = []
        for r in held.values():
            named = r["p"].max(1) >= t
            right = named & (r["p"].argmax(1) == r["truth"])
            gains.append(right.mean() - 2 * (named & ~right).mean())
        if np.mean(gains) > best[0]:
            best = (float(np.mean(gains)), t)
    return best[1]


def table(held: dict[str, dict[str, Any]], unknown_below: float) -> dict[str, dict[str, Any]]:
    out = {}
    for src, r in held.items():
        named = r["p"].max(1) >= unknown_below
        right = named & (r["p"].argmax(1) == r["truth"])
        top = np.bincount(r["p"].argmax(1)[named], minlength=len(KINDS))
        out[src] = {
            "fakes": r["fakes"],
            "true_kinds": r["true_kinds"],
            "kind_seen_in_training": r["kind_seen_in_training"],
            "named_right": float(right.mean()),
            "named_wrong": float((named & ~right).mean()),
            "unknown": float((~named).mean()),
            "top_named": KINDS[int(top.argmax())] if named.any() else None,
        }
    return out


def build(cache: Cache, out: Path) -> dict[str, Any] | None:
    """Fit the served kind head (all sources), write it to `out`, return its LOSO and test tables;
    None when the data names fewer than two kinds."""
    kind = labels(cache)
    if len(set(kind[kind >= 0].tolist())) < 2:
        return None
    held = loso(cache, kind)
    unknown_below = choose_unknown(held)
    spec = choose(cache, kind, cache.split == "train", cache.split == "val")
    spec["unknown_below"] = unknown_below
    out.mkdir(parents=True, exist_ok=True)
    (out / "face-kind.json").write_text(json.dumps(spec) + "\n")
    test = cache.split == "test"
    p = KindHead(spec).probabilities(cache.feats)
    test_rows = {
        src: {
            "p": p[test & (cache.dataset == src) & (kind >= 0)],
            "truth": kind[test & (cache.dataset == src) & (kind >= 0)],
        }
        for src in held
    }
    test_tab = {
        s: {k: v for k, v in row.items() if k in ("named_right", "named_wrong", "unknown", "top_named")}
        for s, row in table(
            {
                s: {**r, "fakes": len(r["truth"]), "true_kinds": {}, "kind_seen_in_training": True}
                for s, r in test_rows.items()
            },
            unknown_below,
        ).items()
    }
    return {
        "unknown_below": unknown_below,
        "C": spec["C"],
        "leave_one_source_out": table(held, unknown_below),
        "test": test_tab,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--out", type=Path, default=Path("models"))
    args = p.parse_args(argv)
    result = build(load_cache(args.cache, args.split, KEYS), args.out)
    sys.stderr.write(json.dumps(result, indent=1) + "\n")
    (args.out / "face-kind.metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
