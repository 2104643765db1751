"""Frozen CLIP features of the face crop + a linear head (training/heads.py fits it on cached features)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api.detectors.encoder import ClipEncoder


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


class ClipHeadDetector:
    def __init__(self, entry: dict[str, Any], model_dir: Path, encoder_path: Path, *, threads: int = 1) -> None:
        self.name = str(entry["name"])
        self.version = str(entry["version"])
        self.head = LinearHead(json.loads((model_dir / entry["file"]).read_text()))
        self.encoder = ClipEncoder(
            encoder_path, layers=layers_of(self.head.keys), sha256=entry["encoder"]["sha256"], threads=threads
        )

    def logits(self, crops: np.ndarray) -> np.ndarray:
        return self.head.logits(self.encoder.features(crops))
