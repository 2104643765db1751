"""The served model: the face detector, the detectors and their fusion, as the model card lists them.

`load()` reads `model_card.json`, checks every file it names against its sha256 (the
detectors' own files beside the card, the third-party weights in the assets folder) and
refuses a card whose face path or preprocessing differs from this code's. `predict_faces`
turns a batch of aligned face crops into each detector's calibrated score and the fused,
calibrated P(fake); `decision` says where a score is `uncertain`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepfake_api import assets, faces, preprocess
from deepfake_api.assets import sha256_file
from deepfake_api.detectors import Detector
from deepfake_api.detectors.artefact import ArtefactCNN
from deepfake_api.detectors.clip_head import ClipHeadDetector
from deepfake_api.detectors.fusion import Fusion, Platt
from deepfake_api.detectors.spectrum import SpectrumDetector
from deepfake_api.errors import ModelCardError

Label = Literal["real", "fake", "uncertain"]
CARD_NAME = "model_card.json"


@dataclass(frozen=True)
class Decision:
    """Where a calibrated score becomes a label (from the card)."""

    threshold: float
    band_low: float
    band_high: float

    def label(self, score: float) -> Label:
        if score >= self.band_high:
            return "fake"
        if score <= self.band_low:
            return "real"
        return "uncertain"

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> Decision:
        dec = card["decision"]
        return cls(
            threshold=float(dec["threshold"]),
            band_low=float(dec["uncertain_band"][0]),
            band_high=float(dec["uncertain_band"][1]),
        )


@dataclass(frozen=True)
class FaceScores:
    """Per face of a batch: the fused calibrated score, and each detector's own calibrated score."""

    fused: np.ndarray
    by_detector: dict[str, np.ndarray]


def card_path(model_path: Path) -> Path:
    """The card itself, or the card beside a model file (DEEPFAKE_MODEL_PATH may name either)."""
    model_path = Path(model_path)
    return model_path if model_path.name == CARD_NAME else model_path.with_name(CARD_NAME)


def read_card(model_path: Path) -> dict[str, Any]:
    path = card_path(model_path)
    if not path.is_file():
        raise ModelCardError(f"no model card at {path}")
    card: dict[str, Any] = json.loads(path.read_text())
    # What the detectors were trained on must be what this code computes.
    for section, expected in (("faces", faces.card_faces()), ("input", preprocess.card_inputs())):
        got = card.get(section, {})
        for key, value in expected.items():
            if got.get(key) != value:
                raise ModelCardError(f"card {section}.{key}={got.get(key)} but this code uses {value}")
    return card


class DeepfakeModel:
    """`load()` once, then `predict_faces(crops)` from one thread at a time (the engine's model thread)."""

    def __init__(self, path: Path, *, threads: int = 0, assets_dir: Path | None = None) -> None:
        self.path = card_path(path)
        self.threads = threads
        self.assets_dir = assets_dir
        self.card: dict[str, Any] = {}
        self.sha256 = ""
        self.decision: Decision | None = None
        self.detectors: list[Detector] = []
        self.calibrations: dict[str, Platt] = {}
        self.fusion: Fusion | None = None
        self.finder: faces.FaceFinder | None = None
        self.ready = False

    @property
    def name(self) -> str:
        return str(self.card.get("name", "unknown"))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    def detector_info(self) -> list[dict[str, str]]:
        return [{"name": d.name, "version": d.version} for d in self.detectors]

    def load(self) -> None:
        """Read and check the card and every file it names, then load the face detector and the detectors."""
        card = read_card(self.path)
        model_dir = self.path.parent
        self.finder = faces.FaceFinder(
            assets.path("yunet", self.assets_dir), card["faces"].get("sha256", assets.ASSETS["yunet"].sha256)
        )
        detectors: list[Detector] = []
        calibrations = {}
        for entry in card["detectors"]:
            own = model_dir / entry["file"]
            if not own.is_file():
                raise ModelCardError(f"detector {entry['name']}: file {entry['file']} missing beside the card")
            digest = sha256_file(own)
            if digest != entry["sha256"]:
                raise ModelCardError(
                    f"detector {entry['name']}: {entry['file']} has sha256 {digest}, card says {entry['sha256']}"
                )
            detectors.append(self._detector(entry, own))
            calibrations[entry["name"]] = Platt.from_card(entry["calibration"])
        self.fusion = Fusion.from_card(card["fusion"])
        missing = set(self.fusion.weights) - {d.name for d in detectors}
        if missing:
            raise ModelCardError(f"the fusion names detectors the card does not list: {sorted(missing)}")
        self.card, self.detectors, self.calibrations = card, detectors, calibrations
        self.sha256 = sha256_file(self.path)
        self.decision = Decision.from_card(card)

    def _detector(self, entry: dict[str, Any], own: Path) -> Detector:
        kind = entry["kind"]
        if kind == "clip_head":
            return ClipHeadDetector(entry, own.parent, assets.path("clip", self.assets_dir), threads=self.threads)
        if kind == "spectrum":
            return SpectrumDetector(entry, own.parent)
        if kind == "artefact_cnn":
            return ArtefactCNN(entry, own, threads=self.threads)
        raise ModelCardError(f"detector {entry['name']}: unknown kind {kind!r}")

    def warm(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run dummy batches so the first request does not pay for graph set-up."""
        for n in batch_sizes:
            self.predict_faces(np.zeros((n, faces.CROP_SIZE, faces.CROP_SIZE, 3), np.uint8))
        self.ready = True

    def logits(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        return {d.name: d.logits(crops) for d in self.detectors}

    def predict_faces(self, crops: np.ndarray) -> FaceScores:
        """Scores for a batch of aligned crops (N x CROP_SIZE x CROP_SIZE x 3 uint8)."""
        assert self.fusion is not None
        logits = self.logits(crops)
        return FaceScores(
            fused=self.fusion(logits),
            by_detector={name: self.calibrations[name](z) for name, z in logits.items()},
        )
