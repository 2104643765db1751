"""Training-only augmentation, applied to the decoded RGB image before `to_model_inputs`.

Robustness across sources: flips, down-and-up scaling, JPEG re-compression at a random
quality, mild blur, colour jitter and noise; random crops of the local view are cut after.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = Image.fromarray(rgb)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.15:
        w, h = img.size
        f = rng.uniform(0.5, 0.9)
        img = img.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.BILINEAR)
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if rng.random() < 0.1:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        mean = arr.mean(axis=(0, 1), keepdims=True)
        contrast = rng.uniform(0.85, 1.15)
        gain = rng.uniform(0.9, 1.1, size=(1, 1, 3))  # brightness and a slight colour cast
        arr = ((arr - mean) * contrast + mean) * gain
    if rng.random() < 0.1:
        arr = arr + rng.normal(0.0, rng.uniform(1.0, 4.0), size=arr.shape)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def random_crop(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return rgb[top : top + size, left : left + size]
