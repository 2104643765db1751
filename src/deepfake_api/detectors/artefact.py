"""The native-resolution artefact CNN (training/architecture.py) on the face crop: a 160 px centre
view at the crop's own scale (no resampling beyond the alignment) and the whole crop at 64 px.

`model.tflite` runs in LiteRT (serving never imports TensorFlow); `model.keras` through a compiled
tf.function, the reference the export is checked against (needs the `train` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api import preprocess
from deepfake_api.errors import ModelCardError


def views(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two uint8 views of each crop (N x 160 x 160 x 3, N x 64 x 64 x 3)."""
    inputs = [preprocess.to_model_inputs(c) for c in crops]
    return np.stack([i.local for i in inputs]), np.stack([i.global_ for i in inputs])


class ArtefactCNN:
    def __init__(self, entry: dict[str, Any], path: Path, *, threads: int = 1) -> None:
        self.name = str(entry["name"])
        self.version = str(entry["version"])
        self.path = path
        if path.suffix == ".tflite":
            self._fn: Any = LiteRTPredictor(path, threads=threads)
        elif path.suffix == ".keras":
            self._fn = compile_predictor(path, threads=threads)
        else:
            raise ModelCardError(f"{path.name}: the artefact CNN must be a .tflite or .keras file")

    def logits(self, crops: np.ndarray) -> np.ndarray:
        local, global_ = views(crops)
        return self.predict_views(local, global_)

    def predict_views(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
        out = self._fn(local.astype(np.float32, copy=False), global_.astype(np.float32, copy=False))
        return np.asarray(out, dtype=np.float64).reshape(-1)


class LiteRTPredictor:
    """`model.tflite` in the LiteRT interpreter: float32 views in, one logit per image out.

    Not thread-safe (one interpreter, resized when the batch size changes, ~0.5 ms): the engine
    calls it from its single model thread. `invoke` releases the GIL, so decoding goes on meanwhile.
    """

    def __init__(self, path: Path, *, threads: int = 0) -> None:
        from ai_edge_litert.interpreter import Interpreter

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
            f"{path.name} is a Keras model and needs TensorFlow (pip install 'deepfake-api[train]'); "
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
