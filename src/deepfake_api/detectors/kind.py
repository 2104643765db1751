"""What kind of manipulation a face looks like: a multinomial logistic regression on the CLIP features
the face detectors already compute (no extra encoder run).

Read from the card's top-level `kind_head` entry ({"file", "sha256"}), a JSON file:
{"kinds": [K names], "keys": ["l11_cls", ...], "layer_norm": true, "mean": [D], "scale": [D],
"coef": [[D] x K], "intercept": [K], "unknown_below": float}: p = softmax(x @ coef.T + intercept)
on the layer-normalised, standardised features side by side. When no kind reaches
`unknown_below`, the answer is "unknown". Nothing here knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfake_api.detectors.clip_head import design
from deepfake_api.errors import ModelCardError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class KindGuess:
    """One face's kind: the most likely name (or "unknown") and every kind's probability."""

    name: str
    probability: float
    probabilities: dict[str, float]


class KindHead:
    def __init__(self, spec: dict[str, Any]) -> None:
        try:
            self.kinds = tuple(str(k) for k in spec["kinds"])
            self.keys = tuple(str(k) for k in spec["keys"])
            self.normalise = bool(spec.get("layer_norm", True))
            self.mean = np.asarray(spec["mean"], np.float64)
            self.scale = np.asarray(spec["scale"], np.float64)
            self.coef = np.asarray(spec["coef"], np.float64)
            self.intercept = np.asarray(spec["intercept"], np.float64)
            self.unknown_below = float(spec["unknown_below"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCardError(f"kind head: malformed file ({exc!r})") from None
        k, d = len(self.kinds), len(self.mean)
        if self.coef.shape != (k, d) or self.intercept.shape != (k,) or self.scale.shape != (d,) or k < 2:
            raise ModelCardError(
                f"kind head: {k} kinds, {d} features but coef {self.coef.shape}, intercept {self.intercept.shape}"
            )
        if UNKNOWN in self.kinds:
            raise ModelCardError(f"kind head: {UNKNOWN!r} is the answer when no kind is likely, not a kind")

    def probabilities(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """N x K probabilities (rows sum to 1)."""
        x = (design(feats, self.keys, normalise=self.normalise) - self.mean) / self.scale
        z = x @ self.coef.T + self.intercept
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), np.float64)

    def guess(self, p: np.ndarray) -> KindGuess:
        """One face's row of `probabilities` as an answer: "unknown" when no kind reaches `unknown_below`."""
        best = int(np.argmax(p))
        top = float(p[best])
        return KindGuess(
            name=self.kinds[best] if top >= self.unknown_below else UNKNOWN,
            probability=round(top, 6),
            probabilities={k: round(float(v), 6) for k, v in zip(self.kinds, p, strict=True)},
        )
