"""Export the trained Keras network to the serving runtime (a LiteRT flatbuffer) and prove parity.

    python -m deepfake_api.training.export --model models/model.keras

The service does not import TensorFlow: it runs `model.tflite` in the LiteRT interpreter
(XNNPACK kernels), which starts in a fraction of a second and costs ~3 ms per image on two
cores instead of ~9-15 ms through a TensorFlow graph. The export converts the same
fixed-signature function the TensorFlow backend serves, then runs both on probe batches and
refuses to write a runtime whose logits differ by more than `TOLERANCE`. The card records the
file, its sha256 and the measured difference, so the service can check what it loads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api import preprocess
from deepfake_api.errors import ModelCardError
from deepfake_api.model import CARD_NAME, LiteRTPredictor, compile_predictor, sha256_file
from deepfake_api.training.data import DEFAULT_DATA_DIR
from deepfake_api.training.dataset import Images, eval_arrays, items_by_split, load_images

TOLERANCE = 1e-3
"""Largest accepted |logit(TensorFlow) - logit(LiteRT)|; float32 reorderings stay near 1e-5."""
RUNTIME_NAME = "model.tflite"


def probe_batches(extra: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inputs both backends must agree on: noise, flat extremes, and any real views given."""
    rng = np.random.default_rng(0)
    ls, gs = preprocess.LOCAL_SIZE, preprocess.GLOBAL_SIZE
    batches = [
        (rng.integers(0, 256, (n, ls, ls, 3), dtype=np.uint8), rng.integers(0, 256, (n, gs, gs, 3), dtype=np.uint8))
        for n in (1, 7)
    ]
    for value in (0, 255):
        batches.append((np.full((2, ls, ls, 3), value, np.uint8), np.full((2, gs, gs, 3), value, np.uint8)))
    return batches + list(extra or [])


def real_probes(images: Images, batch: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Un-augmented views of real images, in batches, for the parity check."""
    x = eval_arrays(images)
    return [(x["local"][i : i + batch], x["global"][i : i + batch]) for i in range(0, len(images.items), batch)]


def convert(keras_path: Path) -> tuple[bytes, Any]:
    """The LiteRT flatbuffer of the served function, and that function (the reference)."""
    import tensorflow as tf

    fn = compile_predictor(keras_path)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no TensorFlow ops at run time
    return converter.convert(), fn


def max_logit_diff(reference: Any, runtime: LiteRTPredictor, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    worst = 0.0
    for local, global_ in batches:
        ref = np.asarray(reference(local.astype(np.float32), global_.astype(np.float32))).reshape(-1)
        got = runtime(local, global_)
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def export(keras_path: Path, extra: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Write `model.tflite` beside `keras_path` and return the card's `runtime` section."""
    blob, reference = convert(keras_path)
    target = keras_path.with_name(RUNTIME_NAME)
    tmp = target.with_suffix(".tflite.tmp")
    tmp.write_bytes(blob)
    diff = max_logit_diff(reference, LiteRTPredictor(tmp, threads=1), probe_batches(extra))
    if diff > TOLERANCE:
        tmp.unlink()
        raise ModelCardError(f"LiteRT export differs from the Keras model by {diff:.2e} in a logit (> {TOLERANCE})")
    tmp.replace(target)
    return {
        "format": "tflite",
        "file": target.name,
        "sha256": sha256_file(target),
        "file_bytes": target.stat().st_size,
        "max_abs_logit_diff_vs_keras": diff,
        "parity_tolerance": TOLERANCE,
    }


def export_into_card(keras_path: Path, extra: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Export and record the runtime in the model card beside `keras_path`."""
    card_path = keras_path.with_name(CARD_NAME)
    card: dict[str, Any] = json.loads(card_path.read_text())
    if card.get("sha256") not in (None, sha256_file(keras_path)):
        raise ModelCardError(f"{keras_path} does not match its card's sha256: export the model the card describes")
    card["runtime"] = export(keras_path, extra)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card["runtime"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/model.keras"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="parity also on validation images, if present")
    ap.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    args = ap.parse_args(argv)
    extra = []
    if args.data.is_dir() and args.split.is_file():
        extra = real_probes(load_images(items_by_split(args.data, args.split)["val"]))
    print(json.dumps(export_into_card(args.model, extra), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
