"""The whole training pipeline on a tiny generated folder: audit -> split -> train --quick ->
calibrate -> a model the service loads; and training sees exactly what serving sees."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from deepfake_api.app import create_app
from deepfake_api.errors import ModelCardError
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import preprocess
from deepfake_api.training import calibrate, train
from deepfake_api.training.audit import audit, write_audit
from deepfake_api.training.data import read_items
from deepfake_api.training.dataset import eval_arrays, load_images
from deepfake_api.training.split import make_split, write_split
from tests.conftest import make_settings, wait_ready
from tests.utils.images import noise_rgb


def _folder(root: Path, per_label: int = 20) -> None:
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            cells = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
            img = Image.fromarray(cells).resize((200, 180), Image.Resampling.BICUBIC)
            if label == "fake":  # a high-frequency trace the CNN can find
                arr = np.asarray(img).copy()
                arr[::2, ::2] = np.clip(arr[::2, ::2].astype(int) + 40, 0, 255)
                img = Image.fromarray(arr)
            img.save(root / label / f"{label}_{i}.jpg", quality=92)


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _folder(root)
    rows = audit(read_items(root), workers=1)
    write_audit(rows, root / "reports")
    write_split(make_split(rows), root / "split.csv")
    run = root / "run"
    train.main(["--data", str(root), "--split", str(root / "split.csv"), "--out", str(run), "--quick"])
    calibrate.calibrate(run, root / "models", root, root / "split.csv")
    return root / "models" / "model.keras"


def test_quick_training_produces_a_model_the_service_serves(quick_model: Path) -> None:
    card = json.loads(quick_model.with_name("model_card.json").read_text())
    assert card["calibration"]["temperature"] > 0
    low, high = card["decision"]["uncertain_band"]
    assert 0 <= low <= card["decision"]["threshold"] <= high <= 1
    assert card["runtime"]["max_abs_logit_diff_vs_keras"] <= card["runtime"]["parity_tolerance"]
    model = DeepfakeModel(quick_model.with_name("model.tflite"))
    model.load()
    assert model.sha256 == card["runtime"]["sha256"]
    with TestClient(create_app(make_settings(model_path=quick_model.with_name("model.tflite")))) as client:
        wait_ready(client)
        data = (quick_model.parents[1] / "fake" / "fake_0.jpg").read_bytes()
        r = client.post("/predict", files={"file": ("f.jpg", data, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["sha256"] == card["runtime"]["sha256"]


@pytest.mark.parametrize("tampered", ["model.tflite", "model.keras"])
def test_a_tampered_model_file_fails_at_load(quick_model: Path, tmp_path: Path, tampered: str) -> None:
    for name in ("model.keras", "model.tflite", "model_card.json"):
        data = quick_model.with_name(name).read_bytes()
        (tmp_path / name).write_bytes(data + b"\0" if name == tampered else data)
    DeepfakeModel(quick_model.with_name(tampered)).load()  # the original loads
    with pytest.raises(ModelCardError, match="sha256"):
        DeepfakeModel(tmp_path / tampered).load()


def _exif_rotated_jpeg(path: Path) -> None:
    img = Image.fromarray(noise_rgb(260, 180, seed=5))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 on display
    img.save(path, "JPEG", exif=exif, quality=90)


def test_training_inputs_equal_serving_inputs_byte_for_byte(tmp_path: Path) -> None:
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
    Image.fromarray(noise_rgb(1400, 1000, seed=1)).save(tmp_path / "real" / "big.jpg", quality=88)  # draft path
    Image.fromarray(noise_rgb(250, 250, seed=2)).save(tmp_path / "real" / "lfw_like.jpg", quality=88)
    Image.fromarray(noise_rgb(600, 600, seed=4)).save(tmp_path / "fake" / "roboflow_like.jpg", quality=88)  # 1/2
    Image.fromarray(noise_rgb(120, 90, seed=3)).convert("RGBA").save(tmp_path / "fake" / "small.png")
    _exif_rotated_jpeg(tmp_path / "fake" / "rotated.jpg")
    items = read_items(tmp_path)
    trained = eval_arrays(load_images(items, workers=1))
    for i, item in enumerate(items):
        decoded, served = preprocess(item.path.read_bytes())
        assert np.array_equal(trained["local"][i], served.local.astype(np.float32)), item.file
        assert np.array_equal(trained["global"][i], served.global_.astype(np.float32)), item.file
    rotated = next(i for i, it in enumerate(items) if it.file.endswith("rotated.jpg"))
    assert preprocess(items[rotated].path.read_bytes())[0].rgb.shape[:2] == (260, 180)


def test_served_rgb_matches_pillow_rgb_not_bgr() -> None:
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[..., 0] = 200  # pure red
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    decoded, _ = preprocess(buf.getvalue())
    assert decoded.rgb[0, 0].tolist() == [200, 0, 0]
