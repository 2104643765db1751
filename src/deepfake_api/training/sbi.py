"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): a pseudo-fake made from one real face.

The aligned real crop is blended with a slightly transformed copy of itself (colour, scale,
shift, blur or sharpening) inside a soft face mask built from the template landmarks. The
result carries blending boundaries and statistics mismatches like a face swap, with no
identity change, so a detector trained on it learns the artefacts, not who is in the picture.
Works on faces.align_face crops; training only.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_api import faces


def _mask(rng: np.random.Generator) -> np.ndarray:
    """A soft mask over the inner face (eyes to chin) in crop coordinates, jittered."""
    t = faces.TEMPLATE
    centre = t.mean(axis=0) + rng.normal(0, 2.0, 2)
    eye_dist = float(np.linalg.norm(t[1] - t[0]))
    axes = (eye_dist * rng.uniform(0.95, 1.25), eye_dist * rng.uniform(1.15, 1.5))
    mask = np.zeros((faces.CROP_SIZE, faces.CROP_SIZE), np.float32)
    cv2.ellipse(
        mask,
        (round(centre[0]), round(centre[1] + eye_dist * 0.15)),
        (round(axes[0]), round(axes[1])),
        float(rng.uniform(-8, 8)),
        0,
        360,
        1.0,
        -1,
    )
    k = int(rng.choice([7, 11, 15, 21])) | 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    return mask * float(rng.uniform(0.75, 1.0))


def _source(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The copy that gets blended in: colour shift, a little scale and shift, blur or sharpening."""
    src = crop.astype(np.float32)
    src = src * rng.uniform(0.95, 1.05, 3) + rng.uniform(-8, 8, 3)
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-3, 3, 2)
    c = faces.CROP_SIZE / 2
    matrix = np.array([[scale, 0, c - scale * c + shift[0]], [0, scale, c - scale * c + shift[1]]])
    src = cv2.warpAffine(src, matrix, (faces.CROP_SIZE, faces.CROP_SIZE), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        src = cv2.GaussianBlur(src, (0, 0), rng.uniform(0.5, 1.5))
    else:
        blur = cv2.GaussianBlur(src, (0, 0), 1.0)
        src = src + rng.uniform(0.3, 1.0) * (src - blur)
    return src


def self_blend(crop: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-fake from an aligned real crop (uint8 RGB), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    mask = _mask(rng)[:, :, None]
    out = mask * _source(crop, rng) + (1.0 - mask) * crop.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
