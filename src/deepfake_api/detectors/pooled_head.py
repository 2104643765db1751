"""A learned pooling over every CLIP block (RINE-like), served in numpy from the weights training wrote.

Input: for each encoder block b, the CLS token and the mean of the patch tokens (768-d each), each
layer-normalised per sample. Every block goes through one shared projection (1536 -> H, GELU); the
blocks are mixed with learned weights (softmax over blocks: which depths carry the evidence); a small
MLP (H -> H2, GELU -> 1) gives the logit. Fitted by training/pooled.py (Keras), exported to an `.npz`
that holds only arrays; scoring here and in training is this one function, so what is fitted is what
is served. `token_gradients` gives d logit / d feature (for the heatmap of a face).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_api.errors import ModelCardError

_C = float(np.sqrt(2.0 / np.pi))
EPS = 1e-6


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (Keras `gelu(approximate=True)`)."""
    return 0.5 * x * (1.0 + np.tanh(_C * (x + 0.044715 * x * x * x)))


def gelu_grad(x: np.ndarray) -> np.ndarray:
    t = np.tanh(_C * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * x * x)


def _ln(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=-1, keepdims=True)
    sd = x.std(axis=-1, keepdims=True) + EPS
    return (x - mu) / sd, sd


def block_keys(blocks: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(f"l{b}_{t}" for b in blocks for t in ("cls", "mean"))


def block_tensor(feats: dict[str, np.ndarray], blocks: tuple[int, ...]) -> np.ndarray:
    """N x blocks x 1536: [LN(cls_b), LN(mean_b)] per block, float32."""
    parts = []
    for b in blocks:
        cls_ln, _ = _ln(np.asarray(feats[f"l{b}_cls"], np.float32))
        mean_ln, _ = _ln(np.asarray(feats[f"l{b}_mean"], np.float32))
        parts.append(np.concatenate([cls_ln, mean_ln], axis=1))
    return np.stack(parts, axis=1)


class PooledHead:
    ARRAYS = ("blocks", "w1", "b1", "alpha", "w2", "b2", "w3", "b3")

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [k for k in self.ARRAYS if k not in arrays]
        if missing:
            raise ModelCardError(f"pooled head lacks {missing}")
        self.blocks = tuple(int(b) for b in arrays["blocks"])
        self.keys = block_keys(self.blocks)
        self.w1 = np.asarray(arrays["w1"], np.float32)
        self.b1 = np.asarray(arrays["b1"], np.float32)
        self.alpha = np.asarray(arrays["alpha"], np.float32)
        self.w2 = np.asarray(arrays["w2"], np.float32)
        self.b2 = np.asarray(arrays["b2"], np.float32)
        self.w3 = np.asarray(arrays["w3"], np.float32).reshape(-1)
        self.b3 = float(np.asarray(arrays["b3"]).reshape(-1)[0])
        if self.w1.shape[0] != 1536 or len(self.alpha) != len(self.blocks):
            raise ModelCardError("pooled head arrays do not fit 12 x 1536 block features")

    @classmethod
    def from_file(cls, path: Path) -> PooledHead:
        with np.load(path, allow_pickle=False) as d:
            return cls({k: d[k] for k in d.files})

    def logits_from_blocks(self, x: np.ndarray) -> np.ndarray:
        """x: N x blocks x 1536 (block_tensor) -> N logits."""
        h = gelu(x @ self.w1 + self.b1)
        z = np.einsum("nbh,b->nh", h, self.alpha)
        q = gelu(z @ self.w2 + self.b2)
        return np.asarray(q @ self.w3 + self.b3, np.float64)

    def logits(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        return self.logits_from_blocks(block_tensor(feats, self.blocks))

    def token_gradients(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """d logit / d feature for every feature the head reads (N x 768 each), exact (chain rule
        through the MLP, the block mix and each per-sample layer norm)."""
        x = block_tensor(feats, self.blocks)
        u = x @ self.w1 + self.b1
        z = np.einsum("nbh,b->nh", gelu(u), self.alpha)
        v = z @ self.w2 + self.b2
        dz = (self.w3 * gelu_grad(v)) @ self.w2.T  # N x H
        du = self.alpha[None, :, None] * dz[:, None, :] * gelu_grad(u)  # N x B x H
        dx = du @ self.w1.T  # N x B x 1536
        out: dict[str, np.ndarray] = {}
        for i, b in enumerate(self.blocks):
            for j, t in enumerate(("cls", "mean")):
                raw = np.asarray(feats[f"l{b}_{t}"], np.float32)
                y, sd = _ln(raw)
                dy = dx[:, i, j * 768 : (j + 1) * 768]
                out[f"l{b}_{t}"] = (dy - dy.mean(-1, keepdims=True) - y * (dy * y).mean(-1, keepdims=True)) / sd
        return out
