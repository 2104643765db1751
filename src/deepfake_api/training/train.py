"""Train the two-view CNN: seeded, checkpointed every epoch, resumable, with per-source
validation AUC after each epoch. The best epoch (mean validation AUC over sources) is kept.

    python -m deepfake_api.training.train --out runs/main            # full run (hours)
    python -m deepfake_api.training.train --out runs/quick --quick   # tiny subset, 1 epoch
Re-running the same command resumes from the last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from deepfake_api.training.architecture import make_model
from deepfake_api.training.data import DEFAULT_DATA_DIR, Item
from deepfake_api.training.dataset import Images, TrainBatches, eval_arrays, items_by_split, load_images
from deepfake_api.training.evalmetrics import per_source_auc


class ValidationAUC(keras.callbacks.Callback):
    """After each epoch: validation AUC per source; saves `best.keras` when the mean improves."""

    def __init__(self, val: Images, out: Path) -> None:
        super().__init__()
        self.x, self.y, self.sources = eval_arrays(val), val.y, val.sources
        self.out = out
        self.best_file = out / "best.json"
        self.started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logits = self.model.predict(self.x, batch_size=64, verbose=0).reshape(-1)
        aucs = per_source_auc(self.y, logits, self.sources)
        mean = float(np.mean(list(aucs.values()))) if aucs else 0.0
        if logs is not None:
            logs["val_auc_mean"] = mean
            logs.update({f"val_auc_{k}": v for k, v in aucs.items()})
        best = json.loads(self.best_file.read_text()) if self.best_file.exists() else {"val_auc_mean": -1}
        if mean > best["val_auc_mean"]:
            self.model.save(self.out / "best.keras")
            self.best_file.write_text(json.dumps({"epoch": epoch + 1, "val_auc_mean": mean, "per_source": aucs}))
        loss = (logs or {}).get("loss", float("nan"))
        shown = " ".join(f"{k}={v:.3f}" for k, v in aucs.items())
        elapsed = time.time() - self.started
        print(f"epoch {epoch + 1} loss={loss:.4f} val_auc_mean={mean:.3f} {shown} [{elapsed:.0f}s]", flush=True)  # noqa: T201


def _subset(items: list[Item], per_source: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    out: list[Item] = []
    for src in sorted({it.dataset for it in items}):
        for label in ("real", "fake"):
            pool = [it for it in items if it.dataset == src and it.label == label]
            take = rng.permutation(len(pool))[: per_source // 2]
            out.extend(pool[i] for i in sorted(take))
    return out


def train(args: argparse.Namespace) -> Path:
    keras.utils.set_random_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    splits = items_by_split(args.data, args.split)
    if args.exclude_source:
        splits = {k: [it for it in v if it.dataset != args.exclude_source] for k, v in splits.items()}
    if args.quick:
        splits = {k: _subset(v, 24 if k == "train" else 12, args.seed) for k, v in splits.items()}
    train_set, val_set = load_images(splits["train"]), load_images(splits["val"])
    print(f"train {len(train_set.items)} val {len(val_set.items)} images", flush=True)  # noqa: T201
    batches = TrainBatches(train_set, batch=args.batch, crop=args.crop, seed=args.seed)
    steps = len(batches) * args.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - len(batches)), warmup_target=args.lr, warmup_steps=len(batches)
    )
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    callbacks = [
        ValidationAUC(val_set, out),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(out / "backup")),
    ]
    model.fit(batches, epochs=args.epochs, callbacks=callbacks, verbose=args.verbose)
    model.save(out / "last.keras")
    (out / "train_args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    return out / "best.keras"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    ap.add_argument("--out", type=Path, default=Path("runs/main"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exclude-source", default="", help="leave-one-source-out: train without it")
    ap.add_argument("--quick", action="store_true", help="tiny subset, 1 epoch: proves the pipeline")
    ap.add_argument("--verbose", type=int, default=0, help="Keras progress output (0, 1 or 2)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        args.epochs = 1
    train(args)


if __name__ == "__main__":
    main()
