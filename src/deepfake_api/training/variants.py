"""Variants of the linear CLIP probe, measured on the yardstick (docs/model/EXPERIMENTS.md).

Each variant is fitted per leave-one-source-out fold exactly as the served probe is (training
split of the other sources, C on their validation split, self-blended pseudo-fakes and degraded
copies on the training side) and prints one JSON row: the hold-out AUC per source, their mean and
minimum, the **pooled** hold-out AUC (all hold-outs together, every source and label weighing the
same: how far apart the scores of different unseen sources lie, which is what one decision band
sees), and what the served decision rule would do with these scores.

    python -m deepfake_api.training.variants --cache <features> --variant probe
    python -m deepfake_api.training.variants --cache <features> --variant invariant --k-real 3
    python -m deepfake_api.training.variants --cache <features> --variant dro --eta 1 --rounds 4
    python -m deepfake_api.training.variants --cache <features> --variant stack
    python -m deepfake_api.training.variants --cache <features> --variant novelty
    python -m deepfake_api.training.variants --cache <features> --variant centroid [--sbi no] [--keys l11_cls]
    python -m deepfake_api.training.variants --cache <features> --variant early --epochs 1 --per-cell 110 --c-grid 1

- probe: the served head (reference row).
- invariant: before the logistic regression, project out of the standardised features the top
  `k_real` directions along which the real faces of the training sources differ from source to
  source (and `k_fake` for the fake faces): a head that cannot read "which source" among the reals
  should carry over better. The projection folds into the coefficients: still one linear head.
- dro: group-robust reweighting: (source, label) cells whose training loss stays high get more
  weight, round after round (exponentiated, `eta`).
- stack: one head per block feature, fused by non-negative weights fitted on the other sources'
  hold-out logits (nested: a hold-out never sets its own weights).
- flip: the probe, scoring each face as the mean logit of the crop and its mirror image (flip
  test-time augmentation; needs `python -m deepfake_api.training.features --out <features> --flip`
  first). It would run the encoder twice per face.
- centroid: the difference of the (source-balanced) class means in standardised features, scaled
  by a one-dimensional logistic fit: a probe with no fitted covariance (the most regularised linear
  head), to see whether what the probe fits beyond the mean shift is what fails to carry over.
- early: a logistic head trained by Adam from zero for `--epochs` and stopped there, on at most
  `--per-cell` rows per (source, label) (ln_pilot's frozen baseline, on the cached features).
- novelty: not a head: does the distance of a held-out face to its k-th nearest training face
  (standardised features) pick out the faces the probe ranks wrong? If it did, a band could widen for
  unfamiliar faces only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from deepfake_api.detectors.clip_head import design
from deepfake_api.detectors.fusion import sigmoid
from deepfake_api.training.ensemble import (
    BandCheck,
    _held_out,
    choose_band,
    fit_balanced_lr,
    fit_fusion,
    pool_hold_outs,
)
from deepfake_api.training.heads import (
    Cache,
    Head,
    _balanced_weights,
    auc_with_reals,
    choose_c,
    layer_normed,
    load_cache,
    training_rows,
)

PROBE_KEYS = ("l3_mean", "l5_mean", "l7_mean", "l9_mean", "l11_cls")
STACK_KEYS = ("l5_mean", "l7_mean", "l9_mean", "l11_cls", "l11_mean")
GRID = (0.001, 0.01)

Parts = dict[str, tuple[np.ndarray, np.ndarray]]
Fit = Callable[[np.ndarray, float], Head]


def source_directions(x: np.ndarray, y: np.ndarray, g: np.ndarray, label: int, k: int) -> np.ndarray:
    """The top `k` directions (rows, orthonormal) along which the per-source means of the faces with
    `label` differ, in the space of `x`."""
    cells = [(g == s) & (y == label) for s in sorted(set(g.tolist()))]
    means = [x[m].mean(axis=0) for m in cells if m.any()]
    if len(means) < 2 or k <= 0:
        return np.zeros((0, x.shape[1]))
    m = np.asarray(means) - np.mean(means, axis=0)
    return np.asarray(np.linalg.svd(m, full_matrices=False)[2][:k])


def invariant_head(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, keys: tuple[str, ...], c: float, k_real: int, k_fake: int = 0
) -> Head:
    """A logistic regression on standardised features with the between-source directions projected
    out; the projection is folded into the coefficients (coef is orthogonal to those directions)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    faces = g != "sbi"
    u = np.concatenate(
        [
            source_directions(xs[faces], y[faces], g[faces], 0, k_real),
            source_directions(xs[faces], y[faces], g[faces], 1, k_fake),
        ]
    )
    q = np.linalg.qr(u.T)[0] if len(u) else np.zeros((x.shape[1], 0))
    xs = xs - (xs @ q) @ q.T
    lr = LogisticRegression(C=c, max_iter=2000).fit(xs, y, sample_weight=_balanced_weights(y, g))
    w = lr.coef_[0] - q @ (q.T @ lr.coef_[0])
    return Head(keys, mean, scale, w.astype(np.float64), float(lr.intercept_[0]), c)


def dro_head(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, keys: tuple[str, ...], c: float, eta: float, rounds: int
) -> tuple[Head, dict[str, float]]:
    """Group-robust reweighting over (source, label) cells; returns the head and the cells' final weights."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    cell = np.char.add(np.char.add(g.astype(str), "|"), y.astype(str))
    names = sorted(set(cell.tolist()))
    q = dict.fromkeys(names, 1.0)
    base = _balanced_weights(y, g)
    lr = LogisticRegression(C=c, max_iter=1000)
    for _ in range(max(1, rounds)):
        w = base * np.array([q[k] for k in cell])
        lr.fit(xs, y, sample_weight=w * len(w) / w.sum())
        p = np.clip(lr.predict_proba(xs)[:, 1].astype(np.float64), 1e-9, 1 - 1e-9)
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        q = {k: q[k] * float(np.exp(eta * loss[cell == k].mean())) for k in names}
        total = sum(q.values())
        q = {k: v * len(q) / total for k, v in q.items()}
    return Head(keys, mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), c), q


def centroid_head(x: np.ndarray, y: np.ndarray, g: np.ndarray, keys: tuple[str, ...], c: float) -> Head:
    """The difference of the class means in standardised features (each (source, label) cell's mean
    weighs the same), scaled to probabilities by a one-dimensional logistic fit: the limit of a
    linear probe regularised until only the mean shift is left; no covariance is fitted."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    cells = [(src, label) for src in sorted(set(g.tolist())) for label in (0, 1) if ((g == src) & (y == label)).any()]
    mu = {
        label: np.mean([xs[(g == src) & (y == label)].mean(0) for src, lab in cells if lab == label], 0)
        for label in (0, 1)
    }
    d = (mu[1] - mu[0]) / np.linalg.norm(mu[1] - mu[0])
    z = (xs @ d)[:, None]
    lr = LogisticRegression(C=c, max_iter=1000).fit(z, y, sample_weight=_balanced_weights(y, g))
    return Head(keys, mean, scale, (d * lr.coef_[0, 0]).astype(np.float64), float(lr.intercept_[0]), c)


def early_head(
    x: np.ndarray,
    y: np.ndarray,
    g: np.ndarray,
    keys: tuple[str, ...],
    epochs: int,
    per_cell: int = 0,
    lr: float = 1e-3,
    l2: float = 1e-3,
    seed: int = 0,
) -> Head:
    """A logistic head trained by Adam from zero for a few epochs and stopped there (as ln_pilot's
    frozen baseline): batches of 32, each (source, label) cell weighing the same, an L2 penalty on
    the weights; `per_cell` > 0 first draws at most that many rows per cell."""
    rng = np.random.default_rng(seed)
    if per_cell > 0:
        cells = sorted({(s, int(v)) for s, v in zip(g.tolist(), y.tolist(), strict=True)})
        take = np.concatenate([rng.permutation(np.flatnonzero((g == s) & (y == v)))[:per_cell] for s, v in cells])
        x, y, g = x[take], y[take], g[take]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs, yf = (x - mean) / scale, y.astype(np.float64)
    sw = _balanced_weights(y, g)
    w, b = np.zeros(xs.shape[1]), 0.0
    m, v, t = np.zeros(len(w) + 1), np.zeros(len(w) + 1), 0
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for i in range(0, len(order), 32):
            j = order[i : i + 32]
            err = sw[j] * (sigmoid(xs[j] @ w + b) - yf[j]) / len(j)
            grad = np.concatenate([xs[j].T @ err + 2 * l2 * w, [err.sum()]])
            t += 1
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            step = lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-7)
            w, b = w - step[:-1], b - float(step[-1])
    return Head(keys, mean, scale, w.astype(np.float64), float(b), float(epochs))


def choose(cache: Cache, train: np.ndarray, val: np.ndarray, fit: Fit, grid: tuple[float, ...] = GRID) -> Head:
    """The fit whose mean per-source validation AUC is best over `grid` (as heads.choose_c)."""
    best: tuple[float, Head] | None = None
    for c in grid:
        head = fit(train, c)
        s = head.logits(cache.feats)
        aucs = [a for a in (auc_with_reals(cache, s, src, val, val) for src in cache.sources) if a is not None]
        score = float(np.mean(aucs)) if aucs else 0.0
        if best is None or score > best[0]:
            best = (score, head)
    assert best is not None
    return best[1]


def fold_parts(cache: Cache, fit: Fit, grid: tuple[float, ...] = GRID) -> Parts:
    """Held-out source -> (labels, logits) of a head fitted without it."""
    out: Parts = {}
    for src in cache.sources:
        others = cache.dataset != src
        head = choose(cache, others & (cache.split == "train"), others & (cache.split == "val"), fit, grid)
        m = _held_out(cache, src)
        out[src] = (cache.y[m], head.logits(cache.feats)[m])
    return out


def stack_parts(cache: Cache, keys: tuple[str, ...], grid: tuple[float, ...] = GRID) -> tuple[Parts, dict[str, Any]]:
    """One probe per key, then for each hold-out the non-negative fusion fitted on the other hold-outs."""
    per_key = {k: fold_parts(cache, functools.partial(_probe_one, cache, k), grid) for k in keys}
    stacked = {s: (per_key[keys[0]][s][0], np.stack([per_key[k][s][1] for k in keys], 1)) for s in cache.sources}
    out: Parts = {}
    weights: dict[str, Any] = {}
    for s in cache.sources:
        with contextlib.redirect_stderr(io.StringIO()):
            w, b = fit_fusion({t: v for t, v in stacked.items() if t != s}, list(keys))
        out[s] = (stacked[s][0], stacked[s][1] @ w + b)
        weights[s] = dict(zip(keys, np.round(w, 3).tolist(), strict=True))
    return out, weights


def _probe_one(cache: Cache, key: str, mask: np.ndarray, c: float) -> Head:
    return _probe(cache, mask, (key,), c)


def _probe(cache: Cache, mask: np.ndarray, keys: tuple[str, ...], c: float, sbi: bool = True) -> Head:
    return choose_c(cache, mask, np.zeros(len(cache.y), bool), keys, sbi, (c,))


def load_flipped(cache_dir: Path, cache: Cache, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The mirrored crops' features (training/features.py --flip), in the order of the cache's rows."""
    by_file: dict[str, int] = {}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for path in sorted(cache_dir.glob("flip-*.npz")):
        d = np.load(path)
        for f in d["files"]:
            by_file[str(f)] = len(by_file)
        for k in keys:
            parts[k].append(d[f"f_{k}"].astype(np.float32))
    missing = [f for f in cache.files if str(f) not in by_file]
    if missing:
        raise SystemExit(f"{len(missing)} faces have no mirrored features: run training.features --flip first")
    order = np.array([by_file[str(f)] for f in cache.files])
    return {k: np.concatenate(v)[order] for k, v in parts.items()}


def flip_parts(cache: Cache, flipped: dict[str, np.ndarray], keys: tuple[str, ...], grid: tuple[float, ...]) -> Parts:
    """Held-out source -> (labels, mean logit of the crop and its mirror) of the probe fitted without it."""
    out: Parts = {}
    for src in cache.sources:
        others = cache.dataset != src
        head = choose_c(cache, others & (cache.split == "train"), others & (cache.split == "val"), keys, True, grid)
        m = _held_out(cache, src)
        out[src] = (cache.y[m], ((head.logits(cache.feats) + head.logits(flipped)) / 2)[m])
    return out


def pooled_auc(parts: Parts) -> float:
    """AUC over all hold-outs together, every (source, label) weighing the same."""
    y, z, w = pool_hold_outs(parts)
    return float(roc_auc_score(y, z, sample_weight=w))


def summarise(name: str, parts: Parts) -> dict[str, Any]:
    """The row printed per variant: AUC per hold-out, pooled AUC, and the served rule on these scores."""
    aucs = {s: round(float(roc_auc_score(y, z)), 3) for s, (y, z) in parts.items()}
    w, b = fit_balanced_lr({s: (y, z[:, None]) for s, (y, z) in parts.items()})
    probs = {s: (y, sigmoid(z * w[0] + b)) for s, (y, z) in parts.items()}
    band, floor = choose_band(probs)
    checks = [BandCheck.of(y, p, band) for y, p in probs.values()]
    rr = [c.real_called_real for c in checks if c.real_called_real is not None]
    ff = [c.fake_called_fake for c in checks if c.fake_called_fake is not None]
    return {
        "variant": name,
        "loso": aucs,
        "loso_mean": round(float(np.mean(list(aucs.values()))), 3),
        "loso_min": min(aucs.values()),
        "pooled_auc": round(pooled_auc(parts), 3),
        "band": list(band),
        "accuracy_floor": floor,
        "mean_real_called_real": round(float(np.mean(rr)), 3),
        "mean_fake_called_fake": round(float(np.mean(ff)), 3),
    }


def knn_distance(q: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each row of `q` to its k-th nearest row of `ref` (k counts from 0)."""
    r2 = (ref**2).sum(axis=1)
    d = np.empty(len(q))
    for i in range(0, len(q), 512):
        b = q[i : i + 512]
        dd = (b**2).sum(axis=1)[:, None] + r2[None] - 2 * b @ ref.T
        d[i : i + 512] = np.sqrt(np.maximum(np.partition(dd, k, axis=1)[:, k], 0))
    return d


def novelty(cache: Cache, parts: Parts, keys: tuple[str, ...] = PROBE_KEYS, k: int = 10) -> dict[str, Any]:
    """Per hold-out: the share of its faces less familiar than 90 % of the fold's own validation faces
    (distance to the k-th nearest training face, standardised features), and the AUC among the
    familiar and the unfamiliar ones."""
    x = design(cache.feats, keys, normalise=layer_normed(keys))
    out: dict[str, Any] = {}
    for src, (y, z) in parts.items():
        train = (cache.dataset != src) & (cache.split == "train")
        val = (cache.dataset != src) & (cache.split == "val")
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
        ref = ((x[train] - mu) / sd)[:: max(1, int(train.sum()) // 4000)]
        limit = float(np.quantile(knn_distance((x[val] - mu) / sd, ref, k), 0.9))
        far = knn_distance((x[_held_out(cache, src)] - mu) / sd, ref, k) >= limit
        row: dict[str, Any] = {"unfamiliar_share": round(float(far.mean()), 3)}
        for name, m in (("auc_familiar", ~far), ("auc_unfamiliar", far)):
            row[name] = round(float(roc_auc_score(y[m], z[m])), 3) if len(set(y[m].tolist())) > 1 else None
        out[src] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument(
        "--variant",
        choices=("probe", "invariant", "dro", "stack", "novelty", "flip", "centroid", "early"),
        required=True,
    )
    p.add_argument("--k-real", type=int, default=3)
    p.add_argument("--k-fake", type=int, default=0)
    p.add_argument("--eta", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--c-grid", type=float, nargs="+", default=list(GRID))
    p.add_argument("--sbi", choices=("yes", "no"), default="yes", help="self-blended pseudo-fakes on the training side")
    p.add_argument("--keys", nargs="+", help="feature keys (default: the served probe's)")
    p.add_argument("--no-aug", action="store_true", help="leave out the degraded copies of the training faces")
    p.add_argument("--epochs", type=int, default=1, help="early: epochs of Adam before it stops")
    p.add_argument("--per-cell", type=int, default=0, help="early: at most this many rows per (source, label); 0: all")
    args = p.parse_args(argv)
    keys = tuple(args.keys) if args.keys else STACK_KEYS if args.variant == "stack" else PROBE_KEYS
    sbi = args.sbi == "yes"
    cache = load_cache(args.cache, args.split, keys)
    grid = tuple(args.c_grid)

    def rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return training_rows(cache, mask, keys, sbi, aug=not args.no_aug)

    fits: dict[str, Fit] = {
        "probe": lambda mask, c: _probe(cache, mask, keys, c, sbi),
        "centroid": lambda mask, c: centroid_head(*rows(mask), keys, c),
        "early": lambda mask, c: early_head(*rows(mask), keys, args.epochs, args.per_cell),
        "invariant": lambda mask, c: invariant_head(*rows(mask), keys, c, args.k_real, args.k_fake),
        "dro": lambda mask, c: dro_head(*rows(mask), keys, c, args.eta, args.rounds)[0],
        "novelty": lambda mask, c: _probe(cache, mask, keys, c),
    }
    extra: dict[str, Any] = {}
    if args.variant == "stack":
        parts, extra["weights"] = stack_parts(cache, keys, grid)
    elif args.variant == "flip":
        parts = flip_parts(cache, load_flipped(args.cache, cache, keys), keys, grid)
    else:
        parts = fold_parts(cache, fits[args.variant], grid)
    if args.variant == "novelty":
        extra["novelty"] = novelty(cache, parts)
    name = {"invariant": f"invariant k_real={args.k_real} k_fake={args.k_fake}", "dro": f"dro eta={args.eta}"}
    extra.update(sbi=sbi, aug=not args.no_aug, keys=list(keys))
    if args.variant == "early":
        extra.update(epochs=args.epochs, per_cell=args.per_cell)
    row = {**summarise(name.get(args.variant, args.variant), parts), "c_grid": list(grid), **extra}
    sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
