"""The served runtime (LiteRT) is the trained network (Keras through TensorFlow), and serving
never imports TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from deepfake_api.errors import ModelCardError
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import preprocess
from tests.conftest import KERAS_PATH, MODEL_PATH, make_settings, wait_ready
from tests.utils.images import jpeg_bytes, png_bytes


def _images(dataset_dir: Path | None) -> list[bytes]:
    generated = [jpeg_bytes(300, 200, seed=s) for s in range(4)] + [png_bytes(120, 160, seed=9)]
    if dataset_dir is None:
        return generated
    real = sorted(dataset_dir.glob("*/*/*.jpg"))[::250][:24]  # every source and label
    return generated + [p.read_bytes() for p in real]


@pytest.fixture(scope="module")
def both() -> tuple[DeepfakeModel, DeepfakeModel]:
    lite, ref = DeepfakeModel(MODEL_PATH), DeepfakeModel(KERAS_PATH)
    assert (lite.backend, ref.backend) == ("litert", "tensorflow")
    lite.load()
    ref.load()
    return lite, ref


def test_litert_logits_equal_keras_logits(
    both: tuple[DeepfakeModel, DeepfakeModel], request: pytest.FixtureRequest
) -> None:
    try:
        dataset: Path | None = request.getfixturevalue("dataset_dir")
    except pytest.skip.Exception:
        dataset = None
    lite, ref = both
    views = [preprocess(data)[1] for data in _images(dataset)]
    local, global_ = np.stack([v.local for v in views]), np.stack([v.global_ for v in views])
    a, b = lite.predict_logits(local, global_), ref.predict_logits(local, global_)
    assert a.shape == b.shape == (len(views),)
    assert np.abs(a - b).max() <= 1e-3
    assert np.ptp(b) > 0.1  # the probes are not all the same answer
    # batch size changes (the interpreter is resized) do not change any answer
    singles = np.concatenate([lite.predict_logits(local[i : i + 1], global_[i : i + 1]) for i in range(len(views))])
    np.testing.assert_allclose(singles, a, atol=1e-4)
    decision = lite.decision
    assert decision is not None
    assert [decision.label(s) for s in decision.score(a)] == [decision.label(s) for s in decision.score(b)]


def test_both_backends_answer_the_same_over_http() -> None:
    data = jpeg_bytes(260, 240, seed=3)
    answers = {}
    for backend, path in (("litert", MODEL_PATH), ("tensorflow", KERAS_PATH)):
        with TestClient(create_app(make_settings(model_path=path))) as client:
            wait_ready(client)
            r = client.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")})
            assert r.status_code == 200, r.text
            answers[backend] = r.json()
    lite, ref = answers["litert"], answers["tensorflow"]
    assert lite["label"] == ref["label"]
    assert abs(lite["score"] - ref["score"]) <= 1e-4
    card = json.loads(MODEL_PATH.with_name("model_card.json").read_text())
    assert lite["model"]["sha256"] == card["runtime"]["sha256"] != ref["model"]["sha256"] == card["sha256"]


def test_the_committed_runtime_matches_its_card() -> None:
    card = json.loads(MODEL_PATH.with_name("model_card.json").read_text())
    runtime = card["runtime"]
    assert MODEL_PATH.name == runtime["file"]
    assert MODEL_PATH.stat().st_size == runtime["file_bytes"] < 10 * 1024 * 1024
    assert runtime["max_abs_logit_diff_vs_keras"] <= runtime["parity_tolerance"] <= 1e-3


def test_a_card_without_a_runtime_is_refused_with_the_fix(tmp_path: Path) -> None:
    card = json.loads(MODEL_PATH.with_name("model_card.json").read_text())
    del card["runtime"]
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    (tmp_path / "model.tflite").write_bytes(MODEL_PATH.read_bytes())
    with pytest.raises(ModelCardError, match="deepfake_api.training.export"):
        DeepfakeModel(tmp_path / "model.tflite").load()


@pytest.mark.parametrize(
    ("key", "value"),
    [("jpeg_draft_min_short_side", 640), ("norm_short_side", [128, 256]), ("local_size", 128), ("global_size", 96)],
)
def test_a_card_from_other_preprocessing_is_refused(tmp_path: Path, key: str, value: object) -> None:
    card = json.loads(MODEL_PATH.with_name("model_card.json").read_text())
    card["input"][key] = value  # e.g. a model trained before the JPEG DCT-scale rule
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    (tmp_path / "model.tflite").write_bytes(MODEL_PATH.read_bytes())
    with pytest.raises(ModelCardError, match=key):
        DeepfakeModel(tmp_path / "model.tflite").load()


def test_an_unknown_model_file_type_is_refused() -> None:
    with pytest.raises(ModelCardError, match=".tflite or .keras"):
        DeepfakeModel(Path("models/model.onnx"))


SERVE_WITHOUT_TF = """
import sys
from fastapi.testclient import TestClient
from deepfake_api.app import create_app
from tests.conftest import make_settings, wait_ready
from tests.utils.images import jpeg_bytes
with TestClient(create_app(make_settings())) as client:
    wait_ready(client)
    r = client.post("/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf_keras"})
print(",".join(loaded) or "none")
"""


def test_serving_never_imports_tensorflow() -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TF], cwd=root, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "none"
