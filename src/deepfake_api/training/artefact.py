"""Train the artefact CNN (detectors/artefact.py) on the cached face crops, leave-one-source-out.

The crops come from the feature cache (training/features.py: the serving face path), so the
network reads exactly what the service will give it. Each run trains from scratch, seeded, on
the training split of the sources it may see, with self-blended pseudo-fakes of their real
faces as one more kind of fake; batches are balanced (half real, half fake, every source alike).
The local view trains on random CROP px patches of the centre view (the network is fully
convolutional with global pooling, so it scores the whole LOCAL_SIZE view at run time); light
JPEG re-compression and flips. The best epoch by mean per-source validation AUC is kept,
exported to LiteRT with a parity check, and every cached face is scored by that export.

Runs: `all` (every source: the served network), then `loso-<source>` for each source (trained
without it). Finished runs are skipped and an interrupted one resumes from its last epoch, so
re-running the same command continues:

    python -m deepfake_api.training.artefact --cache ~/.cache/deepfake-api/features \
        --runs ~/.cache/deepfake-api/artefact
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake_api.detectors.artefact import GLOBAL_SIZE, LOCAL_SIZE, LiteRTPredictor, global_view, local_view
from deepfake_api.errors import ModelCardError
from deepfake_api.training.heads import Cache, auc_with_reals, load_cache

CROP = 96
TOLERANCE = 1e-3  # largest accepted |logit(Keras) - logit(LiteRT)|
ALL = "all"


@dataclass
class Crops:
    """Face crops aligned with a Cache's rows, and the self-blended crops aligned with its sbi_parent."""

    faces: np.ndarray
    sbi: np.ndarray


def load_crops(cache: Cache) -> Crops:
    where: dict[str, np.ndarray] = {}
    sbi_of: dict[str, np.ndarray] = {}
    for shard in cache.crops:
        with np.load(shard) as d:  # each key read once: an NpzFile re-reads an array on every access
            names = [str(n) for n in d["files"]]
            found, crops, blended, parents = d["n_faces"] > 0, d["crops"], d["sbi_crops"], d["sbi_of"]
        for i in np.flatnonzero(found):
            where[names[i]] = crops[i]
        for j, i in enumerate(parents):
            sbi_of[names[int(i)]] = blended[j]
    faces = np.stack([where[str(f)] for f in cache.files])
    parents = [str(cache.files[i]) for i in cache.sbi_parent]
    sbi = np.stack([sbi_of[p] for p in parents]) if parents else np.zeros((0, *faces.shape[1:]), np.uint8)
    return Crops(faces, sbi)


def make_model(
    widths: tuple[int, ...] = (16, 32, 64, 128, 128), global_widths: tuple[int, ...] = (16, 32, 64, 96)
) -> Any:
    """Two views in (uint8-valued floats, RGB), one logit out. A fixed Laplacian high-pass beside
    the pixels feeds the full-resolution stem; depthwise-separable convolutions after it (cost)."""
    import keras
    from keras import layers

    def block(x: Any, filters: int, convs: int, name: str, norm: bool, separable: bool) -> Any:
        for i in range(1, convs + 1):
            conv = layers.SeparableConv2D if separable or i > 1 else layers.Conv2D
            if not norm:
                x = conv(filters, 3, padding="same", activation="relu", name=f"{name}_conv{i}")(x)
                continue
            x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        return x

    local_in = keras.Input((None, None, 3), name="local")
    global_in = keras.Input((GLOBAL_SIZE, GLOBAL_SIZE, 3), name="global")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="local_scale")(local_in)
    hp = layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name="highpass")(x)
    x = layers.Concatenate(name="local_stack")([x, hp])
    for i, w in enumerate(widths):
        if i:
            x = layers.MaxPooling2D(2, name=f"local{i}_pool")(x)
        x = block(x, w, 1 if i < 2 else 2, f"local{i}", norm=i > 0, separable=i >= 1)
    local_feat = layers.GlobalAveragePooling2D(name="local_gap")(x)
    g = layers.Rescaling(1 / 127.5, offset=-1.0, name="global_scale")(global_in)
    for i, w in enumerate(global_widths):
        if i:
            g = layers.MaxPooling2D(2, name=f"global{i}_pool")(g)
        g = block(g, w, 1 if i < 2 else 2, f"global{i}", norm=i > 0, separable=False)
    global_feat = layers.GlobalAveragePooling2D(name="global_gap")(g)
    h = layers.Concatenate(name="features")([local_feat, global_feat])
    h = layers.Dropout(0.3, name="dropout")(h)
    h = layers.Dense(64, activation="relu", name="head")(h)
    logit = layers.Dense(1, name="logit")(h)
    model = keras.Model({"local": local_in, "global": global_in}, logit, name="face_artefact_cnn")
    kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32) * 2.0
    model.get_layer("highpass").set_weights([np.repeat(kernel[:, :, None, None], 3, axis=2)])
    return model


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


class Pools:
    """Training images by kind: each real source, each fake source, and the self-blended fakes."""

    def __init__(self, crops: Crops, cache: Cache, mask: np.ndarray, sbi: bool) -> None:
        self.images = crops.faces
        self.sbi_images = crops.sbi
        self.real: list[np.ndarray] = []
        self.fake: list[tuple[str, np.ndarray]] = []
        for src in cache.sources:
            for label in (0, 1):
                idx = np.flatnonzero(mask & (cache.dataset == src) & (cache.y == label))
                if len(idx):
                    (self.real.append(idx) if label == 0 else self.fake.append(("faces", idx)))
        if sbi and len(crops.sbi):
            idx = np.flatnonzero(mask[cache.sbi_parent])
            if len(idx):
                self.fake.append(("sbi", idx))


def make_batches(pools: Pools, *, batch: int, steps: int, seed: int) -> Any:
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0

        def __len__(self) -> int:
            return steps

        def on_epoch_end(self) -> None:
            self.epoch += 1

        def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            rng = np.random.default_rng([seed, self.epoch, i])
            half = batch // 2
            picks: list[np.ndarray] = []
            for _ in range(half):
                pool = pools.real[rng.integers(len(pools.real))]
                picks.append(pools.images[pool[rng.integers(len(pool))]])
            for _ in range(batch - half):
                kind, pool = pools.fake[rng.integers(len(pools.fake))]
                src = pools.sbi_images if kind == "sbi" else pools.images
                picks.append(src[pool[rng.integers(len(pool))]])
            locals_, globals_ = [], []
            for img in picks:
                if rng.random() < 0.5:
                    img = img[:, ::-1]
                if rng.random() < 0.3:
                    img = jpeg(np.ascontiguousarray(img), int(rng.integers(60, 96)))
                img = np.ascontiguousarray(img)
                view = local_view(img[None])[0]
                top, left = rng.integers(0, LOCAL_SIZE - CROP + 1, 2)
                locals_.append(view[top : top + CROP, left : left + CROP])
                globals_.append(global_view(img[None])[0])
            y = np.array([0.0] * half + [1.0] * (batch - half), np.float32)[:, None]
            x = {"local": np.stack(locals_).astype(np.float32), "global": np.stack(globals_).astype(np.float32)}
            return x, y

    return Batches()


def val_auc(cache: Cache, logits: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per source, AUC on `mask` rows; fake-only sources against the real faces in `mask`."""
    aucs = {src: auc_with_reals(cache, logits, src, mask, mask) for src in cache.sources}
    return {src: a for src, a in aucs.items() if a is not None}


def predict_keras(model: Any, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(crops), batch):
        c = crops[i : i + batch]
        x = {"local": local_view(c).astype(np.float32), "global": global_view(c).astype(np.float32)}
        out.append(np.asarray(model(x, training=False)).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def predict_tflite(path: Path, crops: np.ndarray, batch: int = 64, threads: int = 2) -> np.ndarray:
    run = LiteRTPredictor(path, threads=threads)
    out = [
        run(local_view(crops[i : i + batch]), global_view(crops[i : i + batch])) for i in range(0, len(crops), batch)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def export(model: Any, target: Path, probes: np.ndarray) -> float:
    """Write the LiteRT flatbuffer of `model` to `target`; refuse it if its logits differ from Keras'."""
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, LOCAL_SIZE, LOCAL_SIZE, 3], tf.float32, name="local"),
            tf.TensorSpec([None, GLOBAL_SIZE, GLOBAL_SIZE, 3], tf.float32, name="global"),
        ]
    )
    def serve(local: Any, global_: Any) -> Any:
        return model({"local": local, "global": global_}, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    tmp = target.with_suffix(".tmp.tflite")
    tmp.write_bytes(converter.convert())
    diff = float(np.abs(predict_keras(model, probes) - predict_tflite(tmp, probes)).max())
    if diff > TOLERANCE:
        tmp.unlink()
        raise ModelCardError(f"LiteRT export differs from the Keras network by {diff:.2e} in a logit (> {TOLERANCE})")
    tmp.replace(target)
    return diff


def train_run(
    cache: Cache,
    crops: Crops,
    exclude: str | None,
    out: Path,
    *,
    epochs: int,
    steps: int,
    batch: int,
    sbi: bool,
    seed: int,
) -> dict[str, Any]:
    """One run: train without `exclude` (None: every source), keep the best epoch, export, score every face."""
    import keras

    done = out / "run.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    seen = cache.dataset != exclude if exclude else np.ones(len(cache.y), bool)
    train, val = seen & (cache.split == "train"), seen & (cache.split == "val")
    pools = Pools(crops, cache, train, sbi)
    model = make_model()
    total = epochs * steps
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total - steps), warmup_target=2e-3, warmup_steps=steps
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    val_idx = np.flatnonzero(val)
    started = time.monotonic()

    class Best(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            z = np.full(len(cache.y), np.nan)
            z[val_idx] = predict_keras(self.model, crops.faces[val_idx])
            aucs = val_auc(cache, z, val)
            mean = float(np.mean(list(aucs.values()))) if aucs else 0.0  # a tiny split may have none
            best_file = out / "best.json"
            best = json.loads(best_file.read_text()) if best_file.exists() else {"val_auc_mean": -1.0}
            if mean > best["val_auc_mean"]:
                self.model.save_weights(out / "best.weights.h5")
                best_file.write_text(json.dumps({"epoch": epoch + 1, "val_auc_mean": mean, "per_source": aucs}))
            shown = " ".join(f"{k}={v:.3f}" for k, v in aucs.items())
            loss = (logs or {}).get("loss", float("nan"))
            sys.stderr.write(
                f"[{out.name}] epoch {epoch + 1}/{epochs} loss={loss:.4f} val_auc_mean={mean:.3f} {shown} "
                f"[{time.monotonic() - started:.0f}s]\n"
            )

    callbacks = [
        Best(),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(out / "backup")),
    ]
    model.fit(make_batches(pools, batch=batch, steps=steps, seed=seed), epochs=epochs, callbacks=callbacks, verbose=0)
    model.load_weights(out / "best.weights.h5")
    probes = crops.faces[val_idx[:: max(1, len(val_idx) // 64)]]
    diff = export(model, out / "model.tflite", probes)
    logits = predict_tflite(out / "model.tflite", crops.faces)
    np.savez(out / "logits.npz", files=cache.files, logits=logits)
    best = json.loads((out / "best.json").read_text())
    run = {
        "exclude": exclude,
        "epochs": epochs,
        "steps": steps,
        "batch": batch,
        "sbi": sbi,
        "seed": seed,
        "best_epoch": best["epoch"],
        "val_auc": best["per_source"],
        "max_abs_logit_diff_vs_keras": diff,
        "seconds": round(time.monotonic() - started, 1),
    }
    if exclude:
        held = cache.dataset == exclude
        run["held_out_auc"] = auc_with_reals(cache, logits, exclude, held, (cache.split == "test") & ~held)
    done.write_text(json.dumps(run, indent=2) + "\n")
    sys.stderr.write(f"[{out.name}] done: {json.dumps(run)}\n")
    return run


def read_logits(run_dir: Path, files: np.ndarray) -> np.ndarray:
    """A finished run's logits, in the order of `files`."""
    d = np.load(run_dir / "logits.npz")
    by_file = dict(zip((str(f) for f in d["files"]), d["logits"], strict=True))
    return np.array([by_file[str(f)] for f in files], np.float64)


def run_name(exclude: str | None) -> str:
    return f"loso-{exclude}" if exclude else ALL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--runs", type=Path, required=True, help="one folder per run (outside the repository)")
    p.add_argument("--only", nargs="+", default=None, help="run names to do (default: all, then every loso-<source>)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--no-sbi", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a test run): its threads stay as they are
        pass
    cache = load_cache(args.cache, args.split, keys=("spectrum",))
    crops = load_crops(cache)
    sys.stderr.write(f"{len(crops.faces)} faces, {len(crops.sbi)} self-blended\n")
    plan: list[str | None] = [None, *cache.sources]  # the served network first
    for exclude in plan:
        name = run_name(exclude)
        if args.only and name not in args.only:
            continue
        train_run(
            cache,
            crops,
            exclude,
            args.runs / name,
            epochs=args.epochs,
            steps=args.steps,
            batch=args.batch,
            sbi=not args.no_sbi,
            seed=args.seed,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
