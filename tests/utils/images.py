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
