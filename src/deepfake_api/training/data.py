"""Reading labelled image folders: a MANIFEST.csv, or `real/` and `fake/` subfolders."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets"


@dataclass(frozen=True)
class Item:
    path: Path
    file: str  # relative to the data folder: the stable key in split files
    dataset: str
    label: str  # "real" | "fake"
    group: str  # manifest group ("" when none)
    sha256: str

    @property
    def y(self) -> int:
        return 1 if self.label == "fake" else 0


def read_items(root: Path) -> list[Item]:
    """Items of a labelled folder: MANIFEST.csv when present, else real/ and fake/ subfolders."""
    root = Path(root)
    manifest = root / "MANIFEST.csv"
    if manifest.is_file():
        with manifest.open(newline="") as fh:
            return [
                Item(
                    path=root / row["file"],
                    file=row["file"],
                    dataset=row.get("dataset") or root.name,
                    label=row["label"].strip().lower(),
                    group=row.get("group") or "",
                    sha256=row.get("sha256") or "",
                )
                for row in csv.DictReader(fh)
            ]
    items = []
    for label in ("real", "fake"):
        for path in sorted((root / label).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                rel = path.relative_to(root).as_posix()
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                items.append(Item(path, rel, root.name, label, "", sha))
    if not items:
        raise FileNotFoundError(f"{root} has neither MANIFEST.csv nor real/ and fake/ images")
    return items
