"""Load the CNN with its model card, check them against each other, and predict.

The network outputs one logit per image. The card says how to turn it into an honest
P(fake) (Platt scaling fitted on validation) and where the verdict is `uncertain`.
The file's suffix picks the backend. `model.tflite` (served by default) runs in the LiteRT
interpreter with XNNPACK kernels, so serving never imports TensorFlow (ready in ~1.5 s instead
of ~9 s, ~3-4 ms per image instead of ~9-15 ms). `model.keras` runs through a compiled
tf.function: the trained network, the reference the export is checked against
(training/export.py), and what training and calibration use; it needs the `train` extra.
Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepfake_api import preprocess
from deepfake_api.errors import ModelCardError

Label = Literal["real", "fake", "uncertain"]
Backend = Literal["litert", "tensorflow"]
BACKENDS: dict[str, Backend] = {".tflite": "litert", ".keras": "tensorflow"}
CARD_NAME = "model_card.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Decision:
    """How a logit becomes a calibrated score and a label (from the card)."""

    temperature: float
    threshold: float
    band_low: float
    band_high: float
    bias: float = 0.0

    def score(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def label(self, score: float) -> Label:
        if score >= self.band_high:
            return "fake"
        if score <= self.band_low:
            return "real"
        return "uncertain"

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> Decision:
        cal, dec = card["calibration"], card["decision"]
        return cls(
            temperature=float(cal["temperature"]),
            bias=float(cal.get("bias", 0.0)),
            threshold=float(dec["threshold"]),
            band_low=float(dec["uncertain_band"][0]),
            band_high=float(dec["uncertain_band"][1]),
        )


def read_card(model_path: Path) -> dict[str, Any]:
    card_path = model_path.with_name(CARD_NAME)
    if not card_path.is_file():
        raise ModelCardError(f"no model card beside {model_path} (expected {card_path})")
    card: dict[str, Any] = json.loads(card_path.read_text())
    inputs = card.get("input", {})
    # What the network was trained on must be what this code computes; a card from other
    # preprocessing (e.g. a model trained before the JPEG DCT-scale rule) is refused.
    for key, value in preprocess.card_inputs().items():
        if inputs.get(key) != value:
            raise ModelCardError(f"card input {key}={inputs.get(key)} but preprocessing uses {value}")
    return card


class DeepfakeModel:
    """The served CNN: `load()` once, then `predict(local, global_)` from any one thread."""

    def __init__(self, path: Path, *, threads: int = 0) -> None:
        self.path = Path(path)
        self.threads = threads
        if self.path.suffix not in BACKENDS:
            raise ModelCardError(f"{self.path}: the model must be a {' or '.join(BACKENDS)} file")
        self.backend: Backend = BACKENDS[self.path.suffix]
        self.card: dict[str, Any] = {}
        self.sha256 = ""
        self.decision: Decision | None = None
        self._fn: Any = None
        self.ready = False

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.path.stem))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    def load(self) -> None:
        """Read the card, check the file it names against its sha256, and load that backend."""
        self.card = read_card(self.path)
        if self.backend == "litert":
            runtime = self.card.get("runtime") or {}
            if runtime.get("file") != self.path.name:
                raise ModelCardError(
                    f"the card beside {self.path} does not describe it (runtime file: {runtime.get('file')}); "
                    "export the model with `python -m deepfake_api.training.export`"
                )
            expected = runtime.get("sha256")
        else:
            expected = self.card.get("sha256")
        self.sha256 = sha256_file(self.path)
        if expected not in (None, self.sha256):
            raise ModelCardError(f"{self.path} has sha256 {self.sha256}, the card says {expected}")
        self.decision = Decision.from_card(self.card)
        if self.backend == "litert":
            self._fn = LiteRTPredictor(self.path, threads=self.threads)
        else:
            self._fn = compile_predictor(self.path, threads=self.threads)

    def warm(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run dummy batches so the first request does not pay for tracing."""
        for n in batch_sizes:
            self.predict_logits(*_zeros(n))
        self.ready = True

    def predict_logits(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
        """Raw logits for a batch of uint8 views (N x 160 x 160 x 3, N x 64 x 64 x 3); one thread at a time."""
        out = self._fn(local.astype(np.float32, copy=False), global_.astype(np.float32, copy=False))
        return np.asarray(out, dtype=np.float64).reshape(-1)


def _zeros(n: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.zeros((n, preprocess.LOCAL_SIZE, preprocess.LOCAL_SIZE, 3), np.uint8),
        np.zeros((n, preprocess.GLOBAL_SIZE, preprocess.GLOBAL_SIZE, 3), np.uint8),
    )


class LiteRTPredictor:
    """`model.tflite` in the LiteRT interpreter: float32 views in, one logit per image out.

    Not thread-safe (one interpreter, resized when the batch size changes, ~0.5 ms): the engine
    calls it from its single model thread. `invoke` releases the GIL, so decoding goes on meanwhile.
    """

    def __init__(self, path: Path, *, threads: int = 0) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # The caller sizes the threads (Settings.inference_threads knows the CPU quota); 0: one.
        self._interpreter = Interpreter(model_path=str(path), num_threads=max(1, threads))
        inputs = self._interpreter.get_input_details()
        by_size = {int(d["shape_signature"][1]): d["index"] for d in inputs}
        self._local, self._global = by_size[preprocess.LOCAL_SIZE], by_size[preprocess.GLOBAL_SIZE]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0

    def __call__(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
        n = len(local)
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._local, list(local.shape))
            self._interpreter.resize_tensor_input(self._global, list(global_.shape))
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._local, np.ascontiguousarray(local, dtype=np.float32))
        self._interpreter.set_tensor(self._global, np.ascontiguousarray(global_, dtype=np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).reshape(-1)


def compile_predictor(path: Path, *, threads: int = 0) -> Any:
    """Load a .keras file and wrap it in a tf.function with a fixed input signature."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise ModelCardError(
            f"{path} is a Keras model and needs TensorFlow (pip install 'deepfake-api[train]'); "
            "serve the exported model.tflite instead"
        ) from exc

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process: keep its setting
            pass
    net = keras.models.load_model(path, compile=False)
    ls, gs = preprocess.LOCAL_SIZE, preprocess.GLOBAL_SIZE

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, ls, ls, 3], tf.float32, name="local"),
            tf.TensorSpec([None, gs, gs, 3], tf.float32, name="global"),
        ],
        reduce_retracing=True,
    )
    def fn(local: Any, global_: Any) -> Any:
        return net({"local": local, "global": global_}, training=False)

    return fn
