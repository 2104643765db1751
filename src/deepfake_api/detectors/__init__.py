"""Detectors: each reads a batch of aligned face crops (faces.CROP_SIZE, uint8 RGB) and returns one
logit per face. They know nothing of HTTP or batching; `fusion` combines them as the card says."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Detector(Protocol):
    name: str
    version: str

    def logits(self, crops: np.ndarray) -> np.ndarray: ...
