"""`deepfake-api predict --explain`: heatmaps in the output and overlay PNGs beside the CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_api.cli import main
from tests.conftest import MODEL_PATH
from tests.utils.faces import face_jpeg
from tests.utils.images import jpeg_bytes


def test_explain_writes_an_overlay_png_beside_the_csv_for_each_image_with_a_judged_face(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "face.jpg").write_bytes(face_jpeg(1))
    (inputs / "empty.jpg").write_bytes(jpeg_bytes(320, 240, seed=3))
    out_csv = tmp_path / "out" / "faces.csv"
    out_csv.parent.mkdir()
    code = main(["predict", str(inputs), "--model", str(MODEL_PATH), "--csv", str(out_csv), "--explain", "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1)
    rows = {Path(r["file"]).name: r for r in json.loads(out)}
    assert all(f["heatmap"] for f in rows["face.jpg"]["faces"] if f["status"] == "judged")
    assert rows["empty.jpg"]["label"] == "no_face"
    png = out_csv.parent / "face.heatmap.png"
    assert png.is_file() and str(png) in err
    assert not (out_csv.parent / "empty.heatmap.png").exists()  # no face, no overlay
    overlay = np.asarray(Image.open(png).convert("RGB"))
    original = np.asarray(Image.open(inputs / "face.jpg").convert("RGB"))
    assert overlay.shape == original.shape and (overlay != original).any()
    with out_csv.open() as f:
        assert [Path(r["file"]).name for r in csv.DictReader(f)] == ["empty.jpg", "face.jpg"]
