"""Fit the learned block pooling (detectors/pooled_head.py) on cached CLIP features.

Training rows: the faces of the training split, a lower-quality copy of each (JPEG/blur/resize,
same label: sharpness and compression are not evidence), and the self-blended pseudo-fakes of the
real faces; every (source, label) cell weighs the same in total, the pseudo-fakes one more cell.
AdamW with a cosine schedule, dropout on the pooled vector; the epoch kept is the one with the best
mean per-source validation AUC, scored by the serving code (pooled_head.PooledHead) on exported weights.

    python -m deepfake_api.training.pooled --cache ~/.cache/deepfake-api/features   # LOSO + test table
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_api.detectors.fusion import sigmoid
from deepfake_api.detectors.pooled_head import PooledHead, block_keys, block_tensor, gelu, gelu_grad
from deepfake_api.training.heads import Cache, _balanced_weights, auc_with_reals, load_cache

BLOCKS = tuple(range(12))
KEYS = block_keys(BLOCKS)


@dataclass(frozen=True)
class Config:
    hidden: int = 128
    hidden2: int = 64
    rank: int = 256  # the block features are projected on their top principal directions before training
    epochs: int = 10
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    dropout: float = 0.2
    seed: int = 0


@dataclass
class Tensors:
    """The cache's features as block tensors, computed once: faces, their degraded copies, pseudo-fakes."""

    x: np.ndarray
    aug: np.ndarray | None
    sbi: np.ndarray

    @classmethod
    def of(cls, cache: Cache, blocks: tuple[int, ...] = BLOCKS) -> Tensors:
        keys = block_keys(blocks)
        aug = block_tensor(cache.aug_feats, blocks) if all(k in cache.aug_feats for k in keys) else None
        sbi = block_tensor(cache.sbi_feats, blocks) if len(cache.sbi_parent) else np.zeros((0, len(blocks), 1536))
        return cls(block_tensor(cache.feats, blocks), aug, sbi.astype(np.float32))


def rows(cache: Cache, t: Tensors, mask: np.ndarray, *, sbi: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, weights) of the faces in `mask`, their degraded copies and their pseudo-fakes."""
    xs, ys, gs = [t.x[mask]], [cache.y[mask]], [cache.dataset[mask]]
    if t.aug is not None:
        xs.append(t.aug[mask])
        ys.append(cache.y[mask])
        gs.append(cache.dataset[mask])
    if sbi and len(cache.sbi_parent):
        take = mask[cache.sbi_parent]
        xs.append(t.sbi[take])
        ys.append(np.ones(int(take.sum()), int))
        gs.append(np.full(int(take.sum()), "sbi"))
    y, g = np.concatenate(ys), np.concatenate(gs)
    return np.concatenate(xs).astype(np.float32), y, _balanced_weights(y, g)


def principal(x: np.ndarray, rank: int, sample: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 1536 x rank basis) of the block features of the training rows (blocks pooled)."""
    flat = x.reshape(-1, x.shape[-1])
    idx = np.random.default_rng(seed).choice(len(flat), min(sample, len(flat)), replace=False)
    sub = flat[np.sort(idx)].astype(np.float64)
    mu = sub.mean(axis=0)
    vals, vecs = np.linalg.eigh((sub - mu).T @ (sub - mu))
    basis = vecs[:, np.argsort(vals)[::-1][:rank]]
    return mu.astype(np.float32), basis.astype(np.float32)


class Net:
    """The pooled head's network in numpy, with its own backward pass and AdamW (no framework: the
    network is two small matrices; numpy's BLAS trains it in seconds per epoch on 2 cores)."""

    def __init__(self, dim: int, n_blocks: int, cfg: Config, rng: np.random.Generator) -> None:
        self.p = {
            "w1": rng.normal(0, np.sqrt(2.0 / dim), (dim, cfg.hidden)).astype(np.float32),
            "b1": np.zeros(cfg.hidden, np.float32),
            "a": np.zeros(n_blocks, np.float32),
            "w2": rng.normal(0, np.sqrt(2.0 / cfg.hidden), (cfg.hidden, cfg.hidden2)).astype(np.float32),
            "b2": np.zeros(cfg.hidden2, np.float32),
            "w3": rng.normal(0, np.sqrt(1.0 / cfg.hidden2), cfg.hidden2).astype(np.float32),
            "b3": np.zeros(1, np.float32),
        }
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.t = 0

    def alpha(self) -> np.ndarray:
        e = np.exp(self.p["a"] - self.p["a"].max())
        return e / e.sum()

    def loss_and_grads(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, drop: np.ndarray | None = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Weighted binary cross-entropy on logits and its gradients; `drop` masks z (inverted dropout)."""
        p, alpha = self.p, self.alpha()
        u = x @ p["w1"] + p["b1"]
        h = gelu(u)
        z = np.einsum("nbh,b->nh", h, alpha)
        zd = z * drop if drop is not None else z
        v = zd @ p["w2"] + p["b2"]
        q = gelu(v)
        o = q @ p["w3"] + p["b3"][0]
        ws = w / w.sum()
        loss = float((ws * (np.logaddexp(0, o) - y * o)).sum())
        do = (sigmoid(o) - y) * ws
        g = {"w3": q.T @ do, "b3": np.array([do.sum()], np.float32)}
        dv = np.outer(do, p["w3"]) * gelu_grad(v)
        g["w2"], g["b2"] = zd.T @ dv, dv.sum(0)
        dz = dv @ p["w2"].T
        if drop is not None:
            dz = dz * drop
        dalpha = np.einsum("nh,nbh->b", dz, h)
        g["a"] = alpha * (dalpha - (alpha * dalpha).sum())
        du = alpha[None, :, None] * dz[:, None, :] * gelu_grad(u)
        g["w1"] = x.reshape(-1, x.shape[-1]).T @ du.reshape(-1, du.shape[-1])
        g["b1"] = du.sum((0, 1))
        return loss, {k: np.asarray(v, np.float32) for k, v in g.items()}

    def step(self, g: dict[str, np.ndarray], lr: float, wd: float, b1: float = 0.9, b2: float = 0.999) -> None:
        self.t += 1
        for k in self.p:
            self.m[k] = b1 * self.m[k] + (1 - b1) * g[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * g[k] ** 2
            mh, vh = self.m[k] / (1 - b1**self.t), self.v[k] / (1 - b2**self.t)
            decay = wd if k in ("w1", "w2", "w3") else 0.0
            self.p[k] = self.p[k] - lr * (mh / (np.sqrt(vh) + 1e-8) + decay * self.p[k])


def export(net: Net, blocks: tuple[int, ...], mu: np.ndarray, basis: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays for pooled_head.PooledHead; the projection is folded into the first layer:
    ((x - mu) @ basis) @ w + b == x @ (basis @ w) + (b - mu @ basis @ w)."""
    p = net.p
    return {
        "blocks": np.array(blocks, np.int32),
        "w1": (basis @ p["w1"]).astype(np.float32),
        "b1": (p["b1"] - (mu @ basis) @ p["w1"]).astype(np.float32),
        "alpha": net.alpha().astype(np.float32),
        "w2": p["w2"].copy(),
        "b2": p["b2"].copy(),
        "w3": p["w3"].copy(),
        "b3": p["b3"].copy(),
    }


def val_score(cache: Cache, z: np.ndarray, val: np.ndarray) -> float:
    aucs = [a for a in (auc_with_reals(cache, z, s, val, val) for s in cache.sources) if a is not None]
    return float(np.mean(aucs)) if aucs else 0.0


def fit(
    cache: Cache, t: Tensors, train: np.ndarray, val: np.ndarray, cfg: Config = Config(), *, sbi: bool = True
) -> tuple[PooledHead, dict[str, np.ndarray], dict[str, float]]:
    """The head of the best epoch by mean per-source validation AUC, its arrays, and its training log."""
    rng = np.random.default_rng(cfg.seed)
    x, y, w = rows(cache, t, train, sbi=sbi)
    mu, basis = principal(x, cfg.rank, seed=cfg.seed)
    x = ((x - mu) @ basis).astype(np.float32)
    yf = y.astype(np.float32)
    net = Net(cfg.rank, x.shape[1], cfg, rng)
    per_epoch = int(np.ceil(len(x) / cfg.batch))
    total = cfg.epochs * per_epoch
    best: tuple[float, dict[str, np.ndarray], int] | None = None
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        for i in range(per_epoch):
            idx = np.sort(order[i * cfg.batch : (i + 1) * cfg.batch])
            keep = (rng.random((len(idx), cfg.hidden)) >= cfg.dropout) / (1 - cfg.dropout)
            _, g = net.loss_and_grads(x[idx], yf[idx], w[idx], keep.astype(np.float32))
            lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * net.t / total)))
            net.step(g, lr, cfg.weight_decay)
        arrays = export(net, BLOCKS, mu, basis)
        score = val_score(cache, PooledHead(arrays).logits_from_blocks(t.x), val) if val.any() else float(epoch)
        if best is None or score > best[0]:
            best = (score, arrays, epoch)
    assert best is not None
    return PooledHead(best[1]), best[1], {"val_auc": best[0], "best_epoch": best[2], "rows": len(x)}


def loso_logits(
    cache: Cache, t: Tensors, cfg: Config = Config(), *, sbi: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out source -> (labels, logits) of a head fitted without it."""
    out = {}
    everything = np.ones(len(cache.y), bool)
    for src in cache.sources:
        others = cache.dataset != src
        head, _, log = fit(cache, t, others & (cache.split == "train"), others & (cache.split == "val"), cfg, sbi=sbi)
        z = head.logits_from_blocks(t.x)
        m = cache.held_out(src, everything, cache.split == "test")
        out[src] = (cache.y[m], z[m])
        sys.stderr.write(f"pooled loso {src}: {log}\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--epochs", type=int, default=Config.epochs)
    p.add_argument("--hidden", type=int, default=Config.hidden)
    p.add_argument("--no-aug", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from sklearn.metrics import roc_auc_score

    cache = load_cache(args.cache, args.split, KEYS)
    if args.no_aug:
        cache.aug_feats = {}
    t = Tensors.of(cache)
    cfg = Config(epochs=args.epochs, hidden=args.hidden)
    held = loso_logits(cache, t, cfg)
    loso = {s: float(roc_auc_score(y, z)) for s, (y, z) in held.items()}
    head, _, _ = fit(cache, t, cache.split == "train", cache.split == "val", cfg)
    z = head.logits_from_blocks(t.x)
    test = cache.split == "test"
    te = {s: auc_with_reals(cache, z, s, test, test) for s in cache.sources}
    row = {
        "config": cfg.__dict__,
        "aug": not args.no_aug,
        "loso": loso,
        "loso_mean": float(np.mean(list(loso.values()))),
        "test": te,
    }
    sys.stderr.write(json.dumps(row) + "\n")
    if args.out:
        args.out.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
