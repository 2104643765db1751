"""The served model: the face detector, the detectors and their fusion, as the model card lists them.

`load()` reads `model_card.json`, checks every file it names against its sha256 (the
detectors' own files beside the card, the third-party weights in the assets folder) and
refuses a card whose face path or preprocessing differs from this code's. `predict_faces`
turns a batch of aligned face crops into each detector's calibrated score and the fused,
calibrated P(fake); `decision` says where a score is `uncertain`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepfake_api import assets, faces, preprocess
from deepfake_api.assets import sha256_file
from deepfake_api.detectors import Detector
from deepfake_api.detectors.artefact import ArtefactCNN
from deepfake_api.detectors.clip_head import ClipHeadDetector
from deepfake_api.detectors.encoder import GRID
from deepfake_api.detectors.fusion import Fusion, Platt
from deepfake_api.detectors.kind import KindHead
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
    # With explain: each spatial detector's N x GRID x GRID patch contributions (its logit units),
    # and their fusion-weighted sum (fused logit units; > 0 pushes towards fake).
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    # With a kind head: N x K probabilities over `DeepfakeModel.kind_head.kinds`.
    kinds: np.ndarray | None = None


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
        self.kind_head: KindHead | None = None
        self._kind_source: Any = None  # the detector whose encoder features the kind head reads
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
        self.kind_head, self._kind_source = self._load_kind_head(card, model_dir, detectors)
        self.card, self.detectors, self.calibrations = card, detectors, calibrations
        self.sha256 = sha256_file(self.path)
        self.decision = Decision.from_card(card)

    @staticmethod
    def _load_kind_head(
        card: dict[str, Any], model_dir: Path, detectors: list[Detector]
    ) -> tuple[KindHead | None, Any]:
        """The card's optional top-level `kind_head` ({"file", "sha256"}), checked like the detectors'
        files, bound to the first detector with an encoder (its features, one run). No entry: no kinds."""
        entry = card.get("kind_head")
        if not entry:
            return None, None
        own = model_dir / str(entry.get("file", ""))
        if not entry.get("file") or not own.is_file():
            raise ModelCardError(f"kind head: file {entry.get('file')} missing beside the card")
        digest = sha256_file(own)
        if digest != entry.get("sha256"):
            raise ModelCardError(f"kind head: {entry['file']} has sha256 {digest}, card says {entry.get('sha256')}")
        head = KindHead(json.loads(own.read_text()))
        source = next((d for d in detectors if hasattr(d, "encode") and hasattr(d, "read_also")), None)
        if source is None:
            raise ModelCardError("kind head: no detector computes the encoder features it reads")
        source.read_also(head.keys)
        return head, source

    def explain_method(self) -> str:
        """How `predict_faces(..., explain=True)` makes its heatmap, naming the detectors without one."""
        assert self.fusion is not None
        spatial = [d for d in self.detectors if hasattr(d, "grid_of") or hasattr(d, "explain")]
        others = [d.name for d in self.detectors if d not in spatial]
        from deepfake_api.detectors.clip_head import EXPLAIN_METHOD

        parts = [
            f"{EXPLAIN_METHOD}; maps weighted by the fusion weights: "
            + ", ".join(f"{d.name} x {self.fusion.weights.get(d.name, 0.0):.3g}" for d in spatial)
        ]
        if others:
            parts.append(f"no spatial map (contribute nothing): {', '.join(others)}")
        return "; ".join(parts)

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

    def predict_faces(self, crops: np.ndarray, explain: bool = False) -> FaceScores:
        """Scores for a batch of aligned crops (N x CROP_SIZE x CROP_SIZE x 3 uint8).

        With `explain`, also each spatial detector's patch map and their fusion-weighted sum
        (`FaceScores.heatmap`); without it the detectors run exactly as `logits` does. With a kind
        head, its probabilities from the features its detector computes anyway."""
        assert self.fusion is not None
        if not explain and self.kind_head is None:
            logits = self.logits(crops)
            grids: dict[str, np.ndarray] = {}
            kinds = None
        else:
            logits, grids, kinds = self._run_all(crops, explain)
        heatmap = None
        if explain:
            heatmap = np.zeros((len(crops), GRID, GRID), np.float64)
            for name, grid in grids.items():
                heatmap = heatmap + self.fusion.weights.get(name, 0.0) * grid
        return FaceScores(
            fused=self.fusion(logits),
            by_detector={name: self.calibrations[name](z) for name, z in logits.items()},
            grids=grids,
            heatmap=heatmap,
            kinds=kinds,
        )

    def _run_all(
        self, crops: np.ndarray, explain: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
        logits, grids, kinds = {}, {}, None
        for d in self.detectors:
            if hasattr(d, "encode") and (explain or d is self._kind_source):
                feats = d.encode(crops, tokens=explain)
                logits[d.name] = d.logits_of(feats)
                if explain:
                    grids[d.name] = d.grid_of(feats)
                if d is self._kind_source and self.kind_head is not None:
                    kinds = self.kind_head.probabilities(feats)
            elif explain and hasattr(d, "explain"):
                logits[d.name], grids[d.name] = d.explain(crops)
            else:
                logits[d.name] = d.logits(crops)
        return logits, grids, kinds
