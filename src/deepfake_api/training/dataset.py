"""Labelled items from a split file, decoded once through the serving path, and batches."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from deepfake_api.model import compile_predictor
from deepfake_api.preprocess import decode_image, normalize_size, to_model_inputs
from deepfake_api.training.augment import augment, random_crop
from deepfake_api.training.data import Item, read_items
from deepfake_api.training.split import read_csv


@dataclass
class Images:
    items: list[Item]
    rgb: list[np.ndarray]  # normalize_size(decode_image(bytes).rgb), uint8

    @property
    def y(self) -> np.ndarray:
        return np.array([it.y for it in self.items], np.float32)

    @property
    def sources(self) -> np.ndarray:
        return np.array([it.dataset for it in self.items])


def items_by_split(data_dir: Path, split_csv: Path) -> dict[str, list[Item]]:
    split = {r["file"]: r["split"] for r in read_csv(split_csv)}
    out: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    for it in read_items(data_dir):
        side = split.get(it.file, "excluded")
        if side in out:
            out[side].append(it)
    return out


def _load(path: Path) -> np.ndarray:
    return normalize_size(decode_image(path.read_bytes()).rgb)


def load_images(items: list[Item], workers: int = 2) -> Images:
    with ProcessPoolExecutor(workers) as pool:
        rgb = list(pool.map(_load, [it.path for it in items], chunksize=32))
    return Images(items, rgb)


def eval_arrays(images: Images) -> dict[str, np.ndarray]:
    """Un-augmented model inputs, exactly as the service computes them."""
    views = [to_model_inputs(x) for x in images.rgb]
    return {
        "local": np.stack([v.local for v in views]).astype(np.float32),
        "global": np.stack([v.global_ for v in views]).astype(np.float32),
    }


def logits_of(model_file: Path, images: Images, batch: int = 64) -> np.ndarray:
    """Raw logits of a saved network for un-augmented images, through the service's compiled call."""
    x = eval_arrays(images)
    fn = compile_predictor(model_file)
    return np.concatenate(
        [
            np.asarray(fn(x["local"][i : i + batch], x["global"][i : i + batch])).reshape(-1)
            for i in range(0, len(images.items), batch)
        ]
    )


class TrainBatches(keras.utils.PyDataset):
    """Augmented, shuffled batches; a thread pool runs Pillow (which releases the GIL)."""

    def __init__(self, images: Images, *, batch: int, crop: int, seed: int, threads: int = 2) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
        self.images, self.batch, self.crop, self.seed = images, batch, crop, seed
        self.epoch = 0
        self.y = images.y
        self.pool = ThreadPoolExecutor(threads)
        self._shuffle()

    def _shuffle(self) -> None:
        self.order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.images.items))

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch)

    def _sample(self, index: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index, salt])
        views = to_model_inputs(augment(self.images.rgb[index], rng))
        return random_crop(views.local, self.crop, rng), views.global_

    def __getitem__(self, i: int) -> tuple[dict[str, Any], np.ndarray]:
        idx = self.order[i * self.batch : (i + 1) * self.batch]
        pairs = list(self.pool.map(self._sample, idx, range(len(idx))))
        x = {
            "local": np.stack([p[0] for p in pairs]).astype(np.float32),
            "global": np.stack([p[1] for p in pairs]).astype(np.float32),
        }
        return x, self.y[idx][:, None]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()
