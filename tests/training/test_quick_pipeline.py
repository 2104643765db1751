"""The whole training pipeline on a tiny folder of real faces: audit -> split -> feature cache
(the serving face path) -> heads, fusion, band -> a model card the service loads and serves."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from deepfake_api import assets, faces
from deepfake_api.app import create_app
from deepfake_api.training import artefact, ensemble, features, report
from deepfake_api.training.audit import audit
from deepfake_api.training.data import read_items
from deepfake_api.training.heads import load_cache
from deepfake_api.training.split import make_split, write_split
from tests.conftest import make_settings, wait_ready
from tests.utils.faces import face_jpeg


def _fake(data: bytes) -> bytes:
    """A crude manipulation the heads can learn: a blurred, tinted face."""
    img = Image.open(io.BytesIO(data)).convert("RGB").filter(ImageFilter.GaussianBlur(2.5))
    arr = np.asarray(img).astype(np.int16)
    arr[..., 0] += 25
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quick")
    data = root / "data"
    rows = []
    for k, source in enumerate(("source-a", "source-b")):
        for label in ("real", "fake"):
            (data / source / label).mkdir(parents=True)
            for i in range(10):
                raw = face_jpeg(10 * k + i)
                body = raw if label == "real" else _fake(raw)
                rel = f"{source}/{label}/{i}.jpg"
                (data / rel).write_bytes(body)
                rows.append(
                    {
                        "dataset": source,
                        "label": label,
                        "file": rel,
                        "group": "",
                        "sha256": hashlib.sha256(body).hexdigest(),
                    }
                )
    with (data / "MANIFEST.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    audited = audit(read_items(data), workers=1)
    write_split(make_split(audited), root / "split.csv")
    assert features.main(["--data", str(data), "--out", str(root / "cache"), "--shard", "16"]) == 0
    cnn = ["--cache", str(root / "cache"), "--split", str(root / "split.csv"), "--runs", str(root / "artefact")]
    assert artefact.main([*cnn, "--epochs", "2", "--steps", "3", "--batch", "8"]) == 0
    ensemble.build(
        root / "cache",
        root / "split.csv",
        root / "models",
        ensemble.DETECTORS,
        True,
        root / "report",
        root / "artefact",
        version="2099.01.01.1",
    )
    return root


def test_the_cache_holds_the_serving_face_crop_and_features_for_every_face(run: Path) -> None:
    shards = sorted((run / "cache").glob("shard-*[0-9].npz"))
    assert len(shards) == 3  # 40 rows in shards of 16
    d = np.load(shards[0])
    assert d["crops"].shape[1:] == (faces.CROP_SIZE, faces.CROP_SIZE, 3)
    assert d["f_l11_cls"].shape == (int((d["n_faces"] > 0).sum()), 768)
    assert len(d["sbi_crops"]) == len(d["sbi_of"]) > 0, "real faces bring self-blended pseudo-fakes"
    finder = faces.FaceFinder(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    first = run / "data" / str(d["files"][0])
    assert np.array_equal(d["crops"][0], faces.analyse(first.read_bytes(), finder).faces[0].crop)
    cache = load_cache(run / "cache", run / "split.csv")
    assert len(cache.y) == 40 and set(cache.sources) == {"source-a", "source-b"}


def test_the_fitted_card_fuses_every_detector_and_the_service_serves_it(run: Path) -> None:
    card = json.loads((run / "models" / "model_card.json").read_text())
    assert [d["name"] for d in card["detectors"]] == [d.name for d in ensemble.DETECTORS]
    assert set(card["fusion"]["weights"]) == {d.name for d in ensemble.DETECTORS}
    low, high = card["decision"]["uncertain_band"]
    assert 0 < low < 0.5 < high < 1
    for part in ("leave_one_source_out", "test"):
        assert set(card["metrics"][part]) == {"source-a", "source-b"}
    assert card["metrics"]["leave_one_source_out"]["source-a"]["auc"] > 0.5, "the heads learned the manipulation"
    with TestClient(create_app(make_settings(model_path=run / "models" / "model_card.json"))) as client:
        wait_ready(client)
        r = client.post("/predict", files={"file": ("f.jpg", (run / "data/source-a/fake/0.jpg").read_bytes())})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["version"] == card["version"] == "2099.01.01.1"
    assert {d["version"] for d in card["detectors"]} == {"2099.01.01.1"}
    assert body["model"]["sha256"] == hashlib.sha256((run / "models" / "model_card.json").read_bytes()).hexdigest()
    assert [d["name"] for d in body["faces"][0]["detectors"]] == [d.name for d in ensemble.DETECTORS]


def test_the_report_is_written_from_the_card_and_the_hold_out_scores(run: Path) -> None:
    text = report.build(run / "models", run / "report")
    assert "Leave-one-source-out" in text and "| **fused** |" in text
    assert (run / "report" / "leave_one_source_out.png").stat().st_size > 0


def test_a_tampered_head_file_fails_at_load(run: Path, tmp_path: Path) -> None:
    from deepfake_api.errors import ModelCardError
    from deepfake_api.model import DeepfakeModel

    for f in (run / "models").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    head = tmp_path / f"{ensemble.DETECTORS[1].name}.json"
    head.write_text(head.read_text().replace("[", "[ ", 1))
    with pytest.raises(ModelCardError, match="sha256"):
        DeepfakeModel(tmp_path / "model_card.json").load()


def test_a_shard_of_fakes_only_is_cached_without_pseudo_fakes(tmp_path: Path) -> None:
    """The tail of the interleaved order can hold fakes only (fake-only sources outlast the reals):
    such a shard is cached with no self-blended rows instead of failing the run."""
    from deepfake_api.detectors.encoder import ClipEncoder
    from deepfake_api.training.data import Item

    rows = []
    for i in range(2):
        path = tmp_path / f"fake-{i}.jpg"
        path.write_bytes(_fake(face_jpeg(i)))
        rows.append(Item(path, path.name, "generated", "fake", "", hashlib.sha256(path.read_bytes()).hexdigest()))
    detector = faces.FaceDetector(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    encoder = ClipEncoder(assets.path("clip"), layers=(3,), sha256=assets.ASSETS["clip"].sha256)
    out = tmp_path / "shard-0000.npz"
    features.cache_shard(rows, detector, encoder, out)
    shard = np.load(out)
    assert len(shard["sbi_of"]) == 0 and shard["sbi_crops"].shape == (0, faces.CROP_SIZE, faces.CROP_SIZE, 3)
    assert (shard["n_faces"] > 0).all() and shard["f_l3_mean"].shape == (2, 768)


def test_the_artefact_cnn_runs_once_per_hold_out_and_a_rerun_keeps_them(run: Path) -> None:
    runs = run / "artefact"
    assert sorted(p.name for p in runs.iterdir()) == ["all", "loso-source-a", "loso-source-b"]
    done = json.loads((runs / "loso-source-a" / "run.json").read_text())
    assert done["exclude"] == "source-a" and done["max_abs_logit_diff_vs_keras"] <= artefact.TOLERANCE
    stamp = (runs / "all" / "model.tflite").stat().st_mtime_ns
    cnn = ["--cache", str(run / "cache"), "--split", str(run / "split.csv"), "--runs", str(runs)]
    assert artefact.main([*cnn, "--epochs", "2", "--steps", "3", "--batch", "8"]) == 0
    assert (runs / "all" / "model.tflite").stat().st_mtime_ns == stamp, "a finished run is not trained again"


def test_the_served_artefact_cnn_is_the_exported_network(run: Path) -> None:
    """The card's .tflite is the 'all' run's export, and LiteRT scores the cached crops as that run did."""
    from deepfake_api.model import DeepfakeModel

    card = json.loads((run / "models" / "model_card.json").read_text())
    entry = next(d for d in card["detectors"] if d["kind"] == "artefact_cnn")
    assert (run / "models" / entry["file"]).read_bytes() == (run / "artefact" / "all" / "model.tflite").read_bytes()
    cache = load_cache(run / "cache", run / "split.csv")
    crops = artefact.load_crops(cache).faces
    model = DeepfakeModel(run / "models" / "model_card.json")
    model.load()
    served = model.logits(crops[:5])[entry["name"]]
    assert np.allclose(served, artefact.read_logits(run / "artefact" / "all", cache.files)[:5], atol=1e-4)


def test_an_artefact_cnn_trained_on_other_views_is_refused(run: Path, tmp_path: Path) -> None:
    from deepfake_api.errors import ModelCardError
    from deepfake_api.model import DeepfakeModel

    for f in (run / "models").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    card = json.loads((tmp_path / "model_card.json").read_text())
    next(d for d in card["detectors"] if d["kind"] == "artefact_cnn")["views"]["local"] = "centre 128 px"
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="views"):
        DeepfakeModel(tmp_path / "model_card.json").load()
