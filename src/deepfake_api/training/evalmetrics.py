"""Metrics shared by training, calibration and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def per_source_auc(y: np.ndarray, score: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    out = {}
    for src in sorted(set(sources)):
        m = sources == src
        if len(set(y[m])) == 2:
            out[str(src)] = float(roc_auc_score(y[m], score[m]))
    return out


def ece(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with equal-width bins on P(fake)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def summary(y: np.ndarray, score: np.ndarray, *, threshold: float, band: tuple[float, float]) -> dict[str, Any]:
    """AUC, accuracy at the threshold, uncertain share, accuracy outside the band, ECE."""
    y = np.asarray(y, np.float64)
    score = np.asarray(score, np.float64)
    confident = (score <= band[0]) | (score >= band[1])
    correct = (score >= threshold) == (y == 1)
    return {
        "n": int(len(y)),
        "auc": float(roc_auc_score(y, score)) if len(set(y)) == 2 else None,
        "accuracy": float(correct.mean()) if len(y) else None,
        "uncertain_share": float(1 - confident.mean()) if len(y) else None,
        "accuracy_outside_band": float(correct[confident].mean()) if confident.any() else None,
        "ece": ece(y, score) if len(y) else None,
    }
