"""Tiny generated images for tests (no dataset needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def noise_rgb(width: int = 200, height: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    arr = base + rng.normal(0, 25, size=(height, width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg_bytes(width: int = 200, height: int = 200, seed: int = 0, quality: int = 90) -> bytes:
    return encode(Image.fromarray(noise_rgb(width, height, seed)), "JPEG", quality=quality)


def png_bytes(width: int = 200, height: int = 200, seed: int = 0, mode: str = "RGB") -> bytes:
    img = Image.fromarray(noise_rgb(width, height, seed))
    if mode != "RGB":
        img = img.convert(mode)
    return encode(img, "PNG")


def smooth_images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """n deterministic RGB uint8 images: a few random low-frequency waves per channel and a bright
    ellipse (a crude face) on them, so that the tokens differ across the crop."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3), dtype=np.float32)
        for c in range(3):
            for _ in range(4):
                fx, fy = rng.uniform(0.5, 4.0, size=2)
                phase = rng.uniform(0, 2 * np.pi)
                img[..., c] += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
        cy, cx, ry, rx = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.3)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[inside] += rng.uniform(0.5, 1.5, size=3)
        img = (img - img.min()) / (img.max() - img.min())
        out[i] = np.round(img * 255).astype(np.uint8)
    return out
