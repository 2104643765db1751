"""Leave-one-source-out: train on two sources, test on every kept image of the third.

The model is selected on the validation split of the two training sources only; the
held-out source is scored once. AUC needs no calibration, so raw logits are used.

    python -m deepfake_api.training.loso --epochs 6 --out runs/loso
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepfake_api.training import train
from deepfake_api.training.data import DEFAULT_DATA_DIR
from deepfake_api.training.dataset import items_by_split, load_images, logits_of
from deepfake_api.training.evalmetrics import summary

SOURCES = ("lfw-faceswap", "dfdc-faces", "roboflow-ciplab")


def held_out_auc(model_file: Path, data: Path, split_csv: Path, source: str) -> dict[str, object]:
    splits = items_by_split(data, split_csv)
    items = [it for side in ("train", "val", "test") for it in splits[side] if it.dataset == source]
    images = load_images(items)
    logits = logits_of(model_file, images)
    prob = 1 / (1 + np.exp(-logits))
    m = summary(images.y, prob, threshold=0.5, band=(0.5, 0.5))
    return {"held_out": source, "n": m["n"], "auc": m["auc"], "accuracy_uncalibrated": m["accuracy"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    ap.add_argument("--out", type=Path, default=Path("runs/loso"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--sources", nargs="*", default=list(SOURCES))
    args = ap.parse_args(argv)
    results = []
    for source in args.sources:
        run = args.out / source
        train.main(
            [
                "--data",
                str(args.data),
                "--split",
                str(args.split),
                "--out",
                str(run),
                "--epochs",
                str(args.epochs),
                "--exclude-source",
                source,
            ]
        )
        result = {**held_out_auc(run / "best.keras", args.data, args.split, source), "epochs": args.epochs}
        result["selected_epoch"] = json.loads((run / "best.json").read_text())["epoch"]
        (run / "loso.json").write_text(json.dumps(result, indent=2))
        results.append(result)
        print(json.dumps(result), flush=True)  # noqa: T201
    (args.out / "loso.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
