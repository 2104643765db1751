"""The audit finds planted blanks and near-duplicates; the split keeps every group on one side."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from deepfake_api.training.audit import audit
from deepfake_api.training.data import read_items
from deepfake_api.training.split import make_split

ROOT = Path(__file__).resolve().parents[2]


def blob_image(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture: distinct seeds give distinct perceptual hashes."""
    cells = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((size, size), Image.Resampling.BICUBIC)


def make_folder(root: Path) -> None:
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
    for i in range(12):
        blob_image(i).save(root / "real" / f"r{i}.png")
        blob_image(100 + i).save(root / "fake" / f"f{i}.png")
    # planted near-duplicates of r0: rotated, and brightened + re-encoded
    blob_image(0).rotate(90).save(root / "real" / "r0_rot.png")
    ImageEnhance.Brightness(blob_image(0)).enhance(1.15).save(root / "real" / "r0_bright.jpg", quality=90)
    # blank images, and the same bytes under both labels
    Image.new("RGB", (96, 96), (255, 255, 255)).save(root / "real" / "blank.png")
    Image.new("RGB", (96, 96), (0, 0, 0)).save(root / "fake" / "black.png")
    same = root / "real" / "twin.png"
    blob_image(999).save(same)
    (root / "fake" / "twin.png").write_bytes(same.read_bytes())


def test_audit_finds_blanks_duplicates_and_cross_label_bytes(tmp_path: Path) -> None:
    make_folder(tmp_path)
    rows = {r["file"]: r for r in audit(read_items(tmp_path), workers=1)}
    assert rows["real/blank.png"]["excluded"] == "near-blank"
    assert rows["fake/black.png"]["excluded"] == "near-blank"
    assert rows["real/twin.png"]["excluded"] == "same-bytes-both-labels"
    assert rows["fake/twin.png"]["excluded"] == "same-bytes-both-labels"
    group = rows["real/r0.png"]["group"]
    assert rows["real/r0_rot.png"]["group"] == group
    assert rows["real/r0_bright.jpg"]["group"] == group
    others = {rows[f"real/r{i}.png"]["group"] for i in range(1, 12)}
    assert group not in others and len(others) == 11


def test_split_keeps_each_group_on_one_side(tmp_path: Path) -> None:
    make_folder(tmp_path)
    rows = make_split(audit(read_items(tmp_path), workers=1))
    sides = defaultdict(set)
    for r in rows:
        sides[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert {r["split"] for r in rows if r["excluded"]} == {"excluded"}


def test_committed_split_is_group_disjoint_and_excludes_audited_images() -> None:
    with (ROOT / "reports" / "data" / "split.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sides = defaultdict(set)
    for r in rows:
        if r["split"] != "excluded":
            sides[r["group"]].add(r["split"])
    assert rows and all(len(s) == 1 for s in sides.values())
    assert all(r["split"] == "excluded" for r in rows if r["excluded"])
    per_side = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert per_side["train"] > 5 * per_side["test"] > 0
