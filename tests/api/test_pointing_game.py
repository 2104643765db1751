"""The pointing game through the real app: does the heatmap point at the manipulated region?

Self-blended fakes (training/sbi.py) of test-split real faces: the blended region is known (the
blend mask, drawn from the same seed), so for each fake we ask /predict?explain=true and check
whether the hottest cell of the face's heatmap, mapped into the uploaded image by its transform,
falls inside the region. Chance is the share of the crop's cells that fall inside it (per image,
mapped the same way). Measured on 8 reals per test source (56 fakes, `make`-independent, no
timing): hit rate 0.52 (29 of 56) vs chance 0.255 with model 2026.12.03, and 0.518 (29 of 56) vs 0.255
with 2026.12.05.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from deepfake_api import faces
from deepfake_api.detectors.encoder import GRID
from deepfake_api.preprocess import decode_image
from deepfake_api.training import sbi
from tests.conftest import DATASET_DIR, ROOT

PER_SOURCE = 8


def blend_region(seed: int) -> np.ndarray:
    """The region `sbi.self_blend(crop, seed)` blends in: its mask (the first draw of the seed's
    generator, as self_blend draws it) above half its peak. CROP_SIZE x CROP_SIZE bool."""
    mask = sbi._mask(np.random.default_rng(seed))
    return np.asarray(mask > 0.5 * mask.max())


def test_the_hottest_cell_falls_in_the_blended_region_more_often_than_chance(
    client: TestClient, dataset_dir: object
) -> None:
    with (ROOT / "reports" / "data" / "split.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == "real" and r["split"] == "test" and not r["excluded"]]
    by_source: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_source.setdefault(r["dataset"], []).append(r)
    picked = [r for s in sorted(by_source) for r in sorted(by_source[s], key=lambda r: r["sha256"])[:PER_SOURCE]]
    finder = client.app.state.model.finder  # type: ignore[attr-defined]
    centres = (np.mgrid[:GRID, :GRID][::-1].reshape(2, -1).T + 0.5) * faces.CROP_SIZE / GRID  # (x, y) per cell
    hits, shares = [], []
    for r in picked:
        path = DATASET_DIR / r["file"]
        if not path.is_file():
            continue
        rgb = decode_image(path.read_bytes()).rgb
        found = finder.detect(rgb)
        if not found or found[0].too_small:
            continue
        seed = int(r["sha256"][:8], 16)
        fake = sbi.self_blend(faces.align_face(rgb, found[0]), seed)
        region = blend_region(seed)
        buf = io.BytesIO()
        Image.fromarray(fake).save(buf, "PNG")
        resp = client.post("/predict", params={"explain": "true"}, files={"file": ("f.png", buf.getvalue())})
        assert resp.status_code == 200, resp.text
        judged = [f for f in resp.json()["faces"] if f["status"] == "judged"]
        if not judged:
            continue  # the detector did not find the face in its own crop: nothing to point at
        heat = judged[0]["heatmap"]
        matrix = np.asarray(heat["transform"])
        # every cell centre of the re-aligned crop, in the uploaded (blended) image's pixels
        xy = np.rint(np.c_[centres, np.ones(len(centres))] @ matrix.T).astype(int)
        ok = (xy >= 0).all(axis=1) & (xy < faces.CROP_SIZE).all(axis=1)
        inside = np.zeros(len(xy), bool)
        inside[ok] = region[xy[ok, 1], xy[ok, 0]]
        hottest = int(np.argmax(np.asarray(heat["grid"]).ravel()))
        hits.append(bool(inside[hottest]))
        shares.append(float(inside.mean()))
    assert len(hits) >= 30, f"only {len(hits)} fakes could be judged"
    rate, share = float(np.mean(hits)), float(np.mean(shares))
    measured = f"{len(hits)} self-blended fakes: hit rate {rate:.3f}, blended share of the crop {share:.3f}"
    assert rate > share, measured
    # clearly above chance: measured about twice the share (see the module's docstring)
    assert rate > 1.5 * share, measured
