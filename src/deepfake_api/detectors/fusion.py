"""Fusion: one calibrated P(fake) per face from the detectors' logits.

The card holds a logistic regression on the detectors' logits (weights per detector name and
a bias), fitted on validation faces; each detector's own score is its logit through its own
Platt scaling, so a client can see what each one thought."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) without overflow for any z (a steep fusion can send logits far out)."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64))), np.float64)


@dataclass(frozen=True)
class Platt:
    temperature: float = 1.0
    bias: float = 0.0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(np.asarray(logits, np.float64) / self.temperature + self.bias)

    @classmethod
    def from_card(cls, cal: dict[str, Any]) -> Platt:
        return cls(float(cal["temperature"]), float(cal.get("bias", 0.0)))


@dataclass(frozen=True)
class Fusion:
    weights: dict[str, float]
    bias: float

    def __call__(self, logits: dict[str, np.ndarray]) -> np.ndarray:
        z = np.full(len(next(iter(logits.values()))), self.bias, np.float64)
        for name, w in self.weights.items():
            z = z + w * np.asarray(logits[name], np.float64)
        return sigmoid(z)

    @classmethod
    def from_card(cls, fusion: dict[str, Any]) -> Fusion:
        return cls({str(k): float(v) for k, v in fusion["weights"].items()}, float(fusion["bias"]))
