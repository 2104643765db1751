"""`deepfake-api evaluate` scores a real/ + fake/ folder with the committed model and reports."""

from __future__ import annotations

import json
from pathlib import Path

from deepfake_api.cli import main
from tests.conftest import MODEL_PATH
from tests.utils.faces import face_jpeg
from tests.utils.images import jpeg_bytes


def test_evaluate_writes_metrics_and_plots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for i in range(4):
            (data / label / f"{i}.jpg").write_bytes(face_jpeg(i + (4 if label == "fake" else 0)))
    (data / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    (data / "real" / "no-face.jpg").write_bytes(jpeg_bytes(200, 200, seed=1))
    out = tmp_path / "out"
    assert main(["evaluate", str(data), "--model", str(MODEL_PATH), "--out", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["errors"] == 1
    assert result["no_face"] == 1, "an image without a face is counted, not scored"
    overall = result["overall"]
    assert overall["n"] == 8
    assert 0.0 <= overall["auc"] <= 1.0 and 0.0 <= overall["ece"] <= 1.0
    assert 0.0 <= overall["uncertain_share"] <= 1.0
    assert (out / "roc.png").stat().st_size > 0 and (out / "reliability.png").stat().st_size > 0
    assert "| overall | 8 |" in (out / "REPORT.md").read_text()
