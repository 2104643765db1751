"""Linear heads on cached encoder features, and the yardstick: leave-one-source-out and the test split.

Reads the shards of training/features.py joined with the split file. A head is a logistic
regression on standardised features (per-sample layer-normalised first, as CLIP's own
post-layer norm would), fitted on the training split; C is chosen on validation. Real faces
may bring one self-blended pseudo-fake each (`--sbi`), only ever on the training side.

    python -m deepfake_api.training.heads --cache ~/.cache/deepfake-api/features --out runs/heads
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from deepfake_api.detectors.clip_head import LinearHead, design
from deepfake_api.detectors.spectrum import spectrum_features

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # C kept landing on 0.01: the grid goes lower


@dataclass
class Cache:
    files: np.ndarray
    dataset: np.ndarray
    y: np.ndarray
    split: np.ndarray
    feats: dict[str, np.ndarray]
    sbi_parent: np.ndarray  # index into files of each SBI row's real face
    sbi_feats: dict[str, np.ndarray]
    crops: list[Path]
    # a lower-quality copy of every face (training/features.degrade), same rows as feats; empty when
    # the cache predates it
    aug_feats: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return sorted(set(self.dataset.tolist()))

    @property
    def fake_only(self) -> set[str]:
        """Sources without a real face (sd-portraits, stylegan3): scored against other sources' reals."""
        return {s for s in self.sources if not ((self.dataset == s) & (self.y == 0)).any()}

    @property
    def real_only(self) -> set[str]:
        """Sources without a fake face (utkface): scored against other sources' fakes."""
        return {s for s in self.sources if not ((self.dataset == s) & (self.y == 1)).any()}

    def held_out(self, source: str, mask: np.ndarray, others: np.ndarray) -> np.ndarray:
        """`source`'s rows in `mask`; a one-class source is completed with the missing class from `others`
        (another split or other sources' test faces, never trained on)."""
        m = mask & (self.dataset == source)
        if source in self.fake_only:
            m = m | (others & (self.dataset != source) & (self.y == 0))
        if source in self.real_only:
            m = m | (others & (self.dataset != source) & (self.y == 1))
        return m


def load_cache(cache: Path, split_csv: Path, keys: tuple[str, ...] | None = None) -> Cache:
    """Every cached row with a face and a split side (excluded images are dropped)."""
    with split_csv.open(newline="") as fh:
        side = {r["file"]: r for r in csv.DictReader(fh)}
    files, feats, sbi_parent, sbi_feats = [], {}, [], {}
    parts: dict[str, list[np.ndarray]] = {}
    sbi_parts: dict[str, list[np.ndarray]] = {}
    aug_parts: dict[str, list[np.ndarray]] = {}
    shards = sorted(p for p in cache.glob("shard-*.npz") if ".spectrum" not in p.name)
    for shard in shards:
        d = {**np.load(shard), **_spectrum(shard)}
        found = d["n_faces"] > 0
        names = d["files"][found]
        fkeys = [k[2:] for k in d if k.startswith("f_")]
        use = [k for k in fkeys if keys is None or k in keys]
        # rows with a face, in shard order; SBI rows point at their parent's position in the shard
        pos = np.cumsum(found) - 1
        base = len(files)
        files.extend(str(n) for n in names)
        for k in use:
            parts.setdefault(k, []).append(d[f"f_{k}"].astype(np.float32))
            if f"aug_{k}" in d:
                aug_parts.setdefault(k, []).append(d[f"aug_{k}"].astype(np.float32))
        if len(d["sbi_of"]):
            sbi_parent.extend(base + pos[d["sbi_of"]])
            for k in use:
                sbi_parts.setdefault(k, []).append(d[f"sbi_{k}"].astype(np.float32))
    feats = {k: np.concatenate(v) for k, v in parts.items()}
    sbi_feats = {k: np.concatenate(v) for k, v in sbi_parts.items()}
    aug_feats = {k: np.concatenate(v) for k, v in aug_parts.items() if sum(map(len, v)) == sum(map(len, parts[k]))}
    rows = [side.get(f) for f in files]
    keep = np.array([r is not None and r["split"] in ("train", "val", "test") for r in rows], bool)
    idx_map = -np.ones(len(files), int)
    idx_map[keep] = np.arange(int(keep.sum()))
    sbi_parent_arr = idx_map[np.array(sbi_parent, int)] if sbi_parent else np.zeros(0, int)
    sbi_keep = sbi_parent_arr >= 0
    kept = [r for r in rows if r is not None and r["split"] in ("train", "val", "test")]
    return Cache(
        files=np.array([r["file"] for r in kept]),
        dataset=np.array([r["dataset"] for r in kept]),
        y=np.array([1 if r["label"] == "fake" else 0 for r in kept]),
        split=np.array([r["split"] for r in kept]),
        feats={k: v[keep] for k, v in feats.items()},
        sbi_parent=sbi_parent_arr[sbi_keep],
        sbi_feats={k: v[sbi_keep] for k, v in sbi_feats.items()},
        crops=shards,
        aug_feats={k: v[keep] for k, v in aug_feats.items()},
    )


@dataclass
class Head:
    keys: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float

    def logits(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Scored by the serving code itself: what is fitted is what is served."""
        return LinearHead(self.to_json()).logits(feats)

    def to_json(self) -> dict[str, object]:
        return {
            "keys": list(self.keys),
            "layer_norm": layer_normed(self.keys),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "C": self.c,
        }


def _spectrum(shard: Path) -> dict[str, np.ndarray]:
    """Spectrum features of a shard's crops (and SBI crops), computed once and kept beside it."""
    side = shard.with_name(shard.stem + ".spectrum.npz")
    if side.exists():
        return dict(np.load(side))
    d = np.load(shard)
    found = d["n_faces"] > 0
    out = {"f_spectrum": spectrum_features(d["crops"][found])["spectrum"]}
    if "aug_crops" in d and len(d["aug_crops"]):
        out["aug_spectrum"] = spectrum_features(d["aug_crops"])["spectrum"]
    if len(d["sbi_crops"]):
        out["sbi_spectrum"] = spectrum_features(d["sbi_crops"])["spectrum"]
    else:
        out["sbi_spectrum"] = np.zeros((0, out["f_spectrum"].shape[1]), np.float32)
    np.savez(side, **out)
    return out


def layer_normed(keys: tuple[str, ...]) -> bool:
    """Encoder features ("l7_cls") are layer-normalised before the head; hand-made ones are not."""
    return all(k.startswith("l") for k in keys)


def _balanced_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each (source, label) cell weighs the same in total: no source or class dominates the fit."""
    w = np.ones(len(y))
    cells = {(g, v) for g, v in zip(groups, y, strict=True)}
    for g, v in cells:
        m = (groups == g) & (y == v)
        w[m] = 1.0 / m.sum()
    return w * len(y) / w.sum()


def fit_head(x: np.ndarray, y: np.ndarray, groups: np.ndarray, keys: tuple[str, ...], c: float) -> Head:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit((x - mean) / scale, y, sample_weight=_balanced_weights(y, groups))
    return Head(keys, mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), c)


def training_rows(
    cache: Cache, mask: np.ndarray, keys: tuple[str, ...], sbi: bool, aug: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and cell ids of the rows in `mask`, plus the SBI pseudo-fakes of their real
    faces and (when cached) a lower-quality copy of each face, in its face's cell."""
    x = design(cache.feats, keys, normalise=layer_normed(keys))[mask]
    y = cache.y[mask]
    g = cache.dataset[mask]
    if aug and all(k in cache.aug_feats for k in keys):
        x = np.concatenate([x, design(cache.aug_feats, keys, normalise=layer_normed(keys))[mask]])
        y = np.concatenate([y, y])
        g = np.concatenate([g, g])
    if sbi and len(cache.sbi_parent):
        take = mask[cache.sbi_parent]
        xs = design(cache.sbi_feats, keys, normalise=layer_normed(keys))[take]
        x = np.concatenate([x, xs])
        y = np.concatenate([y, np.ones(len(xs), int)])
        g = np.concatenate([g, np.full(len(xs), "sbi")])
    return x, y, g


def auc_with_reals(cache: Cache, scores: np.ndarray, source: str, mask: np.ndarray, reals: np.ndarray) -> float | None:
    """AUC of `source`'s rows in `mask`; fake-only sources are ranked against `reals` (other sources' real faces)."""
    m = cache.held_out(source, mask, reals)
    y = cache.y[m]
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, scores[m]))


def choose_c(
    cache: Cache, train: np.ndarray, val: np.ndarray, keys: tuple[str, ...], sbi: bool, grid: tuple[float, ...] = C_GRID
) -> Head:
    """The head whose mean per-source validation AUC is best over `grid`."""
    x, y, g = training_rows(cache, train, keys, sbi)
    best: tuple[float, Head] | None = None
    for c in grid:
        head = fit_head(x, y, g, keys, c)
        s = head.logits(cache.feats)
        aucs = [a for a in (auc_with_reals(cache, s, src, val, val) for src in cache.sources) if a is not None]
        score = float(np.mean(aucs)) if aucs else 0.0  # a tiny split may have no scorable source
        if best is None or score > best[0]:
            best = (score, head)
    assert best is not None
    return best[1]


def loso(
    cache: Cache, keys: tuple[str, ...], sbi: bool, grid: tuple[float, ...] = C_GRID
) -> dict[str, dict[str, object]]:
    """Train on the other six sources (train split; C on their validation), score every row of the held-out one."""
    out: dict[str, dict[str, object]] = {}
    for src in cache.sources:
        others = cache.dataset != src
        head = choose_c(cache, others & (cache.split == "train"), others & (cache.split == "val"), keys, sbi, grid)
        s = head.logits(cache.feats)
        held = cache.dataset == src
        # fake-only sources: against the real faces of the other sources' test split (never trained on)
        auc = auc_with_reals(cache, s, src, held, others & (cache.split == "test"))
        out[src] = {"auc": auc, "n": int(held.sum()), "C": head.c}
    return out


def test_split(
    cache: Cache, keys: tuple[str, ...], sbi: bool, grid: tuple[float, ...] = C_GRID
) -> tuple[Head, dict[str, float | None]]:
    head = choose_c(cache, cache.split == "train", cache.split == "val", keys, sbi, grid)
    s = head.logits(cache.feats)
    test = cache.split == "test"
    return head, {src: auc_with_reals(cache, s, src, test, test) for src in cache.sources}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument(
        "--keys", nargs="+", action="append", help="feature set(s), e.g. --keys l11_cls --keys l7_cls l7_mean"
    )
    p.add_argument("--sbi", choices=("no", "yes", "both"), default="both")
    p.add_argument("--c-grid", type=float, nargs="+", default=None, help=f"C values to try (default {C_GRID})")
    p.add_argument("--no-aug", action="store_true", help="leave out the degraded copies of the training faces")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    grid = tuple(args.c_grid) if args.c_grid else C_GRID
    sets = [tuple(k) for k in (args.keys or [["l11_cls"]])]
    cache = load_cache(args.cache, args.split, tuple({k for ks in sets for k in ks}))
    if args.no_aug:
        cache.aug_feats = {}
    counts = {src: int((cache.dataset == src).sum()) for src in cache.sources}
    sys.stderr.write(f"{len(cache.y)} faces, {len(cache.sbi_parent)} SBI: {counts}\n")
    results = []
    for keys in sets:
        for sbi in {"no": [False], "yes": [True], "both": [False, True]}[args.sbi]:
            lo = loso(cache, keys, sbi, grid)
            _, te = test_split(cache, keys, sbi, grid)
            aucs = [v["auc"] for v in lo.values() if v["auc"] is not None]
            row = {
                "keys": list(keys),
                "sbi": sbi,
                "aug": bool(cache.aug_feats),
                "loso": {k: v["auc"] for k, v in lo.items()},
                "loso_mean": float(np.mean(aucs)),
                "loso_min": float(np.min(aucs)),
                "test": te,
            }
            results.append(row)
            sys.stderr.write(json.dumps(row) + "\n")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "heads.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
