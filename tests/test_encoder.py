"""detectors/encoder.py through the real int8 file: a face's features do not depend on its batch-mates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfake_api import assets
from deepfake_api.detectors.clip_head import LinearHead
from deepfake_api.detectors.encoder import ClipEncoder
from tests.conftest import MODEL_PATH
from tests.utils.images import smooth_images


def test_a_face_gets_the_same_features_and_score_alone_and_among_other_faces() -> None:
    enc = ClipEncoder(assets.path("clip"), layers=(3, 5, 7, 9, 11), sha256=assets.ASSETS["clip"].sha256)
    crops = smooth_images(6)
    together = enc.features(crops)
    for i in range(len(crops)):
        alone = enc.features(crops[i : i + 1])
        for k, v in alone.items():
            assert np.array_equal(v[0], together[k][i]), (k, i)
    # so the served head's score of a face is the same whoever else is in the engine's batch
    card = json.loads(MODEL_PATH.read_text())
    entry = next(d for d in card["detectors"] if d["kind"] == "clip_head")
    head = LinearHead(json.loads((MODEL_PATH.parent / entry["file"]).read_text()))
    first = head.logits(enc.features(crops[:1]))[0]
    for others in (crops[1:3], crops[3:]):
        # (the features are bit-equal; the head's dot product over a batch may round the last digit)
        assert head.logits(enc.features(np.concatenate([crops[:1], others])))[0] == pytest.approx(first, abs=1e-9)


def test_no_crops_give_empty_features() -> None:
    enc = ClipEncoder(assets.path("clip"), layers=(3,), sha256=assets.ASSETS["clip"].sha256)
    out = enc.features(np.zeros((0, 224, 224, 3), np.uint8))
    assert out["l3_cls"].shape == (0, 768) and out["l3_mean"].shape == (0, 768)
