"""A frequency-artefact detector: the log power spectrum of the inner face + a linear head.

Resampling a swapped face and up-sampling in generators leave periodic traces that show up in
the high frequencies (Durall et al. 2020; on lfw-faceswap a linear model on the spectrum reached
0.89-0.91 AUC, MODEL-NOTES.md). It reads the centre SPEC_SIZE px of the aligned crop (inside the
face for every source, so the crop's black border never enters), and costs well under 1 ms per face.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api.detectors.clip_head import LinearHead

SPEC_SIZE = 112
_HALF = SPEC_SIZE // 2
_window = np.outer(np.hanning(SPEC_SIZE), np.hanning(SPEC_SIZE)).astype(np.float32)
_yy, _xx = np.mgrid[:SPEC_SIZE, :SPEC_SIZE]
_radius = np.minimum(np.hypot(_yy - _HALF, _xx - _HALF).astype(int), _HALF - 1)
_counts = np.bincount(_radius.ravel(), minlength=_HALF)


def spectrum_features(crops: np.ndarray) -> dict[str, np.ndarray]:
    """{"spectrum": N x SPEC_SIZE/2}: azimuthally averaged log power of the centred, windowed grey face."""
    n, h, w = crops.shape[:3]
    top, left = (h - SPEC_SIZE) // 2, (w - SPEC_SIZE) // 2
    grey = crops[:, top : top + SPEC_SIZE, left : left + SPEC_SIZE].astype(np.float32).mean(axis=3)
    grey = (grey - grey.mean(axis=(1, 2), keepdims=True)) * _window
    power = np.log(np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2 + 1e-3)
    flat = power.reshape(n, -1)
    radial = np.stack([np.bincount(_radius.ravel(), weights=row, minlength=_HALF) for row in flat]) / _counts
    # relative to the lowest frequencies: contrast and exposure differ by source, the spectrum's shape is the cue
    return {"spectrum": (radial - radial[:, :4].mean(axis=1, keepdims=True)).astype(np.float32)}


class SpectrumDetector:
    def __init__(self, entry: dict[str, Any], model_dir: Path) -> None:
        self.name = str(entry["name"])
        self.version = str(entry["version"])
        self.head = LinearHead(json.loads((model_dir / entry["file"]).read_text()))

    def logits(self, crops: np.ndarray) -> np.ndarray:
        return self.head.logits(spectrum_features(crops))
