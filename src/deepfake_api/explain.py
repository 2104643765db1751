"""Evidence a person can check, per judged face: where (the heatmap over the aligned crop, mapped to
the image by the crop's affine transform), what kind of manipulation it looks like, and whether the
detectors agree. Turns the engine's `FaceVerdict` into the response's pieces and draws heatmaps
over pixels (the CLI's overlay PNGs, the HTML report). Nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from deepfake_api import faces
from deepfake_api.engine import FaceVerdict
from deepfake_api.schemas import Agreement, Heatmap, Kind, KindScore

FAKE_AT = 0.9
REAL_AT = 0.1
"""Two detectors disagree strongly when one's own calibrated score is >= FAKE_AT and another's <= REAL_AT."""


def agreement(detectors: dict[str, float]) -> Agreement | None:
    """Whether the detectors' own calibrated scores agree (None for a face nobody scored)."""
    if not detectors:
        return None
    says_fake = sorted(n for n, s in detectors.items() if s >= FAKE_AT)
    says_real = sorted(n for n, s in detectors.items() if s <= REAL_AT)
    return Agreement(
        status="disagree" if says_fake and says_real else "agree",
        says_fake=says_fake,
        says_real=says_real,
        fake_at=FAKE_AT,
        real_at=REAL_AT,
    )


def normalised(grid: np.ndarray) -> tuple[list[list[float]], float]:
    """A face's raw map (fused-logit units) -> values in [0, 1] (the positive part over its maximum)
    and that maximum: 1 is the cell that pushes hardest towards fake, 0 pushes not at all."""
    g = np.asarray(grid, np.float64)
    top = float(g.max()) if g.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros_like(g).round(4).tolist(), 0.0
    return np.clip(g / top, 0.0, 1.0).round(4).tolist(), round(top, 6)


def heatmap(f: FaceVerdict, method: str) -> Heatmap | None:
    """The response's heatmap of an explained, judged face (None otherwise)."""
    if f.heatmap is None or f.candidate.status != "judged":
        return None
    grid, top = normalised(f.heatmap)
    transform = faces.crop_transform(f.candidate.face)
    return Heatmap(
        grid=grid,
        crop_size=faces.CROP_SIZE,
        transform=np.round(transform, 6).tolist(),
        max_contribution=top,
        method=method,
    )


def kind(f: FaceVerdict, kinds: tuple[str, ...] | None, unknown_below: float) -> Kind | None:
    """The kind of a judged face not labelled real, when the model has a kind head."""
    if f.kinds is None or not kinds or f.label in (None, "real"):
        return None
    p = np.asarray(f.kinds, np.float64)
    order = np.argsort(-p, kind="stable")
    best = int(order[0])
    top = float(p[best])
    return Kind(
        name=kinds[best] if top >= unknown_below else "unknown",
        probability=round(top, 6),
        probabilities=[KindScore(name=kinds[i], probability=round(float(p[i]), 6)) for i in order],
    )


def face_extras(f: FaceVerdict, model: Any) -> dict[str, Any]:
    """agreement, kind and heatmap of one face: the fields FaceResult / FrameFace add for it."""
    head = getattr(model, "kind_head", None)
    method = model.explain_method() if f.heatmap is not None else ""
    return {
        "agreement": agreement(f.detectors),
        "kind": kind(f, head.kinds if head else None, head.unknown_below if head else 1.0),
        "heatmap": heatmap(f, method),
    }


def kind_words(k: dict[str, Any] | None) -> str:
    """ "looks like: face swap 72 %" (or "kind unknown"), for the page's and the report's readers."""
    if not k:
        return ""
    if k["name"] == "unknown":
        return f"kind unknown (most likely {k['probabilities'][0]['name'].replace('_', ' ')} {k['probability']:.0%})"
    return f"looks like: {k['name'].replace('_', ' ')} {round(k['probability'] * 100)} %"


# -- drawing -------------------------------------------------------------------------------------


def colour(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 on one ramp (transparent-ish yellow to red), the page's legend."""
    v = np.clip(np.asarray(v, np.float32), 0, 1)[..., None]
    low = np.array([255, 230, 80], np.float32)
    high = np.array([220, 20, 60], np.float32)
    return (low + (high - low) * v).astype(np.uint8)


def overlay(rgb: np.ndarray, maps: list[dict[str, Any]], *, scale: float = 1.0, alpha: float = 0.55) -> np.ndarray:
    """`rgb` (H x W x 3 uint8) with each face's heatmap drawn over it, warped by its crop transform.

    `maps`: dicts with "grid" (GRID x GRID in [0, 1]) and "transform" (2 x 3, crop px -> image px);
    `scale` maps image px to `rgb`'s px (a thumbnail). Cells at 0 leave the pixels as they were."""
    out = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    for m in maps:
        grid = np.asarray(m["grid"], np.float32)
        big = cv2.resize(grid, (faces.CROP_SIZE, faces.CROP_SIZE), interpolation=cv2.INTER_NEAREST)
        matrix = np.asarray(m["transform"], np.float64) * scale
        warped = cv2.warpAffine(big, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0.0)
        inside = cv2.warpAffine(
            np.ones((faces.CROP_SIZE, faces.CROP_SIZE), np.float32), matrix, (w, h), flags=cv2.INTER_NEAREST
        )
        weight = (alpha * warped * (inside > 0))[..., None]
        out = out * (1 - weight) + colour(warped).astype(np.float32) * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_boxes(rgb: np.ndarray, boxes: list[tuple[dict[str, float], str]], *, scale: float = 1.0) -> np.ndarray:
    """Face boxes (x, y, width, height in image px) drawn in their label's colour."""
    colours = {"fake": (200, 30, 45), "real": (30, 130, 60), "uncertain": (200, 140, 0)}
    out = np.ascontiguousarray(rgb.copy())
    for box, label in boxes:
        x0, y0 = round(box["x"] * scale), round(box["y"] * scale)
        x1, y1 = round((box["x"] + box["width"]) * scale), round((box["y"] + box["height"]) * scale)
        cv2.rectangle(out, (x0, y0), (x1, y1), colours.get(label, (120, 120, 120)), max(1, round(2 * scale)))
    return out


def legend(width: int = 256, height: int = 12) -> np.ndarray:
    """The colour ramp, 0 (left) to 1 (right), as RGB pixels."""
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    return colour(ramp)
