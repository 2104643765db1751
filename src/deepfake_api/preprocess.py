"""The one image path shared by training and serving: bytes -> RGB -> model inputs.

`decode_image` checks and decodes an upload (type by magic bytes, pixel cap read from the
header before decoding, EXIF orientation, every mode to 8-bit RGB). `normalize_size` brings
the short side into [NORM_MIN, NORM_MAX] without touching images already in range (so the
high-frequency traces of a face swap survive). `to_model_inputs` cuts the two views the CNN
reads: a native-resolution centre crop and a low-resolution global view. Training calls the
same three functions; augmentation lives only in `training/`.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from deepfake_api.errors import ImageTooLarge, ImageTooSmall, InvalidImage, UnsupportedMediaType

NORM_MIN = 160
NORM_MAX = 320
DRAFT_MIN = 288  # JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that keeps the short side >= this
LOCAL_SIZE = 160
GLOBAL_SIZE = 64
BACKGROUND = (255, 255, 255)  # transparent pixels are flattened on white

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}


def card_inputs() -> dict[str, object]:
    """What a model trained on this code's inputs records in its card, and the service checks."""
    return {
        "local_size": LOCAL_SIZE,
        "global_size": GLOBAL_SIZE,
        "norm_short_side": [NORM_MIN, NORM_MAX],
        "jpeg_draft_min_short_side": DRAFT_MIN,
    }


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8, H x W x 3, RGB order
    width: int  # as uploaded (before orientation)
    height: int
    format: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelInputs:
    local: np.ndarray  # uint8, LOCAL_SIZE x LOCAL_SIZE x 3
    global_: np.ndarray  # uint8, GLOBAL_SIZE x GLOBAL_SIZE x 3


def sniff_format(data: bytes) -> str | None:
    """Pillow format name from the file's magic bytes, or None when not an accepted type."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def accepted_format(data: bytes) -> str:
    """The upload's format from its magic bytes; UnsupportedMediaType (415) when not accepted.
    A few byte comparisons: cheap enough to run on the event loop before a request is admitted."""
    fmt = sniff_format(data)
    if fmt is None:
        accepted = ", ".join(MEDIA_TYPES.values())
        raise UnsupportedMediaType(f"The file is not an accepted image type ({accepted}).")
    return fmt


def decode_image(
    data: bytes, *, max_pixels: int = 40_000_000, min_side: int = 32, draft_min: int | None = DRAFT_MIN
) -> DecodedImage:
    """Decode an upload to 8-bit RGB, refusing what is not a safe, supported image.
    `draft_min=None` decodes JPEGs at full resolution (the face path: small faces keep their pixels)."""
    fmt = accepted_format(data)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = im.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"The image is {width}x{height} ({width * height} pixels); the limit is {max_pixels} pixels."
                )
            # is_animated stops at the second frame; n_frames would walk every frame of the upload.
            if getattr(im, "is_animated", False):
                notes.append("animated image: only the first frame was judged")
                im.seek(0)
            if fmt == "JPEG" and draft_min is not None:
                # DCT-domain downscale for big photos: far faster, never below draft_min.
                im.draft("RGB", _draft_size(width, height, draft_min))
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except (ImageTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"The image has too many pixels: {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageTooLarge(f"The image has too many pixels: {exc}") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise InvalidImage(f"The {fmt} data is truncated or corrupt ({type(exc).__name__}).") from None
    if min(rgb.shape[:2]) < min_side:
        raise ImageTooSmall(
            f"The image is {rgb.shape[1]}x{rgb.shape[0]}; both sides must be at least {min_side} pixels."
        )
    return DecodedImage(rgb=rgb, width=width, height=height, format=fmt, warnings=notes)


def _draft_size(width: int, height: int, draft_min: int = DRAFT_MIN) -> tuple[int, int]:
    """The size to ask JPEG's DCT-domain scaling (1/2, 1/4, 1/8) for: Pillow picks the smallest
    scale whose result is at least this. Asking for a short side of DRAFT_MIN, not NORM_MAX,
    lets a 600 px photo decode straight to 300 px (in range, no resize) instead of a full
    decode and a bilinear resize to 320 that cost ~4x as much; normalize_size does the rest."""
    short = min(width, height)
    if short <= draft_min:
        return (width, height)
    scale = draft_min / short
    return (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to uint8 RGB; transparency is flattened onto BACKGROUND."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, im)
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    out = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(out, dtype=np.uint8)


def normalize_size(rgb: np.ndarray) -> np.ndarray:
    """Scale so the short side lies in [NORM_MIN, NORM_MAX]; images already in range are untouched."""
    h, w = rgb.shape[:2]
    short = min(h, w)
    if max(h, w) > 2 * short:  # only the centre is read: never resize a sliver's far ends
        rgb = center_crop_rect(rgb, min(h, 2 * short), min(w, 2 * short))
        h, w = rgb.shape[:2]
    if NORM_MIN <= short <= NORM_MAX:
        return rgb
    scale = (NORM_MAX if short > NORM_MAX else NORM_MIN) / short
    return _resize(rgb, max(1, round(w * scale)), max(1, round(h * scale)))


def center_crop_rect(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return rgb[top : top + height, left : left + width]


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    return center_crop_rect(rgb, size, size)


def to_model_inputs(rgb: np.ndarray) -> ModelInputs:
    """The two views the CNN reads, from an RGB image of any size."""
    norm = normalize_size(rgb)
    local = np.ascontiguousarray(center_crop(norm, LOCAL_SIZE))
    square = center_crop(norm, min(norm.shape[:2]))
    global_ = _resize(np.ascontiguousarray(square), GLOBAL_SIZE, GLOBAL_SIZE)
    return ModelInputs(local=local, global_=global_)


def preprocess(data: bytes, *, max_pixels: int = 40_000_000, min_side: int = 32) -> tuple[DecodedImage, ModelInputs]:
    """Bytes to model inputs: the serving path, and the training path without augmentation."""
    decoded = decode_image(data, max_pixels=max_pixels, min_side=min_side)
    return decoded, to_model_inputs(decoded.rgb)
