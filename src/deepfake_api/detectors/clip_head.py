"""Frozen CLIP features of the face crop + a linear head (training/heads.py fits it on cached features).

Explanations (`ClipHeadDetector.explain`): a head says how its logit moves with each feature it
reads (`token_gradients`: d logit / d feature, through the per-sample layer norm and the
standardisation). A "l{k}_mean" feature is the mean of the layer's patch tokens, so the part of
the logit that patch i carries is that gradient dotted with (token_i - mean) / N: exact for the
linear part, first-order through the layer norm. Summed over the layers read, that is one value
per patch: a GRID x GRID map over the aligned crop in logit units (> 0 pushes towards fake). CLS
features have no place in the crop and add nothing to the map. Any head with `keys` and
`token_gradients` plugs into `patch_contributions`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api.detectors.encoder import GRID, ClipEncoder
from deepfake_api.detectors.pooled_head import PooledHead

EXPLAIN_METHOD = "patch-token attribution: d logit / d mean-token feature . (token - mean) / N, summed over layers"


def layer_norm(x: np.ndarray) -> np.ndarray:
    """Per-sample normalisation (CLIP's layer norm without its affine part, which a linear head absorbs)."""
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True) + 1e-6
    return (x - mu) / sd


def design(feats: dict[str, np.ndarray], keys: tuple[str, ...], *, normalise: bool = True) -> np.ndarray:
    """The head's input: the named features side by side, each layer-normalised unless told otherwise."""
    parts = [np.asarray(feats[k], np.float32) for k in keys]
    return np.concatenate([layer_norm(p) if normalise else p for p in parts], axis=1)


def layers_of(keys: tuple[str, ...]) -> tuple[int, ...]:
    """Encoder layers a head reads ("l7_cls" -> 7)."""
    return tuple(sorted({int(k.split("_")[0][1:]) for k in keys}))


class LinearHead:
    """Standardise, then a dot product: what training/heads.py fitted, read from its JSON."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.keys = tuple(spec["keys"])
        self.normalise = bool(spec.get("layer_norm", True))
        self.mean = np.asarray(spec["mean"], np.float64)
        self.scale = np.asarray(spec["scale"], np.float64)
        self.coef = np.asarray(spec["coef"], np.float64)
        self.intercept = float(spec["intercept"])

    def logits(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        x = (design(feats, self.keys, normalise=self.normalise) - self.mean) / self.scale
        return np.asarray(x @ self.coef + self.intercept, np.float64)

    def token_gradients(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{key: N x D}: d logit / d feats[key] for each face, exact (the layer norm's Jacobian included)."""
        out, start = {}, 0
        for key in self.keys:
            v = np.asarray(feats[key], np.float64)
            d = v.shape[1]
            a = self.coef[start : start + d] / self.scale[start : start + d]
            start += d
            if not self.normalise:
                out[key] = np.broadcast_to(a, v.shape).copy()
                continue
            out[key] = layer_norm_vjp(v, a)
        return out


def layer_norm_vjp(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d (layer_norm(v) . a) / d v per row of v (N x D), exact for `layer_norm` (population std + 1e-6)."""
    d = v.shape[1]
    centred = v - v.mean(axis=1, keepdims=True)
    s = np.sqrt((centred**2).mean(axis=1, keepdims=True))
    sd = s + 1e-6
    along = (centred * a).sum(axis=1, keepdims=True)
    return np.asarray((a - a.mean()) / sd - centred * along / (sd**2 * d * np.maximum(s, 1e-12)), np.float64)


def patch_contributions(grads: dict[str, np.ndarray], feats: dict[str, np.ndarray]) -> np.ndarray:
    """N x GRID x GRID: each patch's share of the logit (logit units), from a head's `token_gradients`
    and the encoder's features with tokens. Only "l{k}_mean" keys have a place in the crop."""
    n = len(next(iter(feats.values()))) if feats else 0
    total = np.zeros((n, GRID * GRID), np.float64)
    for key, g in grads.items():
        layer, _, pool = key.partition("_")
        if pool != "mean":
            continue
        tokens = np.asarray(feats[f"{layer}_tokens"], np.float64)  # N x T x D
        centred = tokens - tokens.mean(axis=1, keepdims=True)
        total += np.einsum("ntd,nd->nt", centred, g) / tokens.shape[1]
    return total.reshape(n, GRID, GRID)


def load_head(path: Path) -> LinearHead | PooledHead:
    """A head file as training wrote it: `.npz` the learned block pooling, `.json` a linear head."""
    if path.suffix == ".npz":
        return PooledHead.from_file(path)
    return LinearHead(json.loads(path.read_text()))


class ClipHeadDetector:
    def __init__(self, entry: dict[str, Any], model_dir: Path, encoder_path: Path, *, threads: int = 1) -> None:
        self.name = str(entry["name"])
        self.version = str(entry["version"])
        self.head = load_head(model_dir / entry["file"])
        self.encoder = ClipEncoder(
            encoder_path, layers=layers_of(self.head.keys), sha256=entry["encoder"]["sha256"], threads=threads
        )

        self._encoder_path, self._encoder_sha256, self._threads = encoder_path, entry["encoder"]["sha256"], threads

    def logits(self, crops: np.ndarray) -> np.ndarray:
        return self.head.logits(self.encoder.features(crops))

    def encode(self, crops: np.ndarray, *, tokens: bool = False) -> dict[str, np.ndarray]:
        """The encoder's features (with the patch tokens when `tokens`): for the head and others
        reading the same features (the kind head), one encoder run."""
        return self.encoder.features(crops, tokens=tokens)

    def logits_of(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        return self.head.logits(feats)

    def grid_of(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """N x GRID x GRID patch contributions to the logit, from `encode(crops, tokens=True)`."""
        return patch_contributions(self.head.token_gradients(feats), feats)

    def explain(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits N, grid N x GRID x GRID in logit units; > 0 pushes towards fake)."""
        feats = self.encode(crops, tokens=True)
        return self.logits_of(feats), self.grid_of(feats)

    def read_also(self, keys: tuple[str, ...]) -> None:
        """Make the encoder also return the layers of `keys` (another head on the same features).
        Layers at or below the deepest one already read cost nothing more (the graph is cut there)."""
        layers = set(layers_of(keys)) | set(self.encoder.layers)
        if layers != set(self.encoder.layers):
            self.encoder = ClipEncoder(
                self._encoder_path, layers=tuple(layers), sha256=self._encoder_sha256, threads=self._threads
            )
