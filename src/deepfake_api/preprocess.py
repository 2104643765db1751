"""Decoding an upload, the first step of the one image path (faces.py does the rest).

`decode_image` checks and decodes an upload: type by magic bytes, pixel cap read from the
header before decoding, first frame of an animation, EXIF orientation, every mode to 8-bit RGB
(transparency flattened on white). JPEGs are decoded at full resolution: a small face in a big
photo keeps its pixels. Training decodes through the same function (training/features.py).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from deepfake_api.errors import ImageTooLarge, ImageTooSmall, InvalidImage, UnsupportedMediaType

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
    """What a model trained on this code's decoding records in its card, and the service checks."""
    return {"decode": "full resolution, EXIF orientation, first frame, 8-bit RGB", "background": list(BACKGROUND)}


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8, H x W x 3, RGB order
    width: int  # as uploaded (before orientation)
    height: int
    format: str
    warnings: list[str] = field(default_factory=list)


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


def decode_image(data: bytes, *, max_pixels: int = 40_000_000, min_side: int = 32) -> DecodedImage:
    """Decode an upload to 8-bit RGB, refusing what is not a safe, supported image."""
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
