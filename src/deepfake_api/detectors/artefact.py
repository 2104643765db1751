"""The artefact CNN on the aligned face crop: a small two-view network trained from scratch
(training/artefact.py) on the face crops of every source and on self-blended pseudo-fakes.

It reads two views of each crop: the centre LOCAL_SIZE px at the crop's own scale (no
resampling beyond the alignment, so blending seams and resampling traces keep their pixels)
and the whole crop shrunk to GLOBAL_SIZE px (layout: a pasted face, mismatched skin). The
exported `.tflite` runs in LiteRT (serving never imports TensorFlow), on the engine's model
thread only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake_api.errors import ModelCardError

LOCAL_SIZE = 160
GLOBAL_SIZE = 64


def card_views() -> dict[str, object]:
    """What a network trained on these views records in its card entry, and the service checks."""
    return {
        "local": f"centre {LOCAL_SIZE} px of the crop, native scale",
        "global": f"whole crop, area-resized to {GLOBAL_SIZE} px",
    }


def local_view(crops: np.ndarray) -> np.ndarray:
    top = (crops.shape[1] - LOCAL_SIZE) // 2
    left = (crops.shape[2] - LOCAL_SIZE) // 2
    return np.ascontiguousarray(crops[:, top : top + LOCAL_SIZE, left : left + LOCAL_SIZE])


def global_view(crops: np.ndarray) -> np.ndarray:
    if len(crops) == 0:
        return np.zeros((0, GLOBAL_SIZE, GLOBAL_SIZE, 3), np.uint8)
    return np.stack([cv2.resize(c, (GLOBAL_SIZE, GLOBAL_SIZE), interpolation=cv2.INTER_AREA) for c in crops])


class LiteRTPredictor:
    """A `.tflite` two-view network in the LiteRT interpreter: uint8 views in, one logit per face out.

    Not thread-safe (one interpreter, resized when the batch size changes): the engine calls it
    from its single model thread. `invoke` releases the GIL.
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ModelCardError("the artefact CNN needs ai-edge-litert (pip install deepfake-api)") from exc

        self._interpreter = Interpreter(model_path=str(path), num_threads=max(1, threads))
        named = {
            ("global" if "global" in d["name"] else "local"): d["index"] for d in self._interpreter.get_input_details()
        }
        if set(named) != {"local", "global"}:
            raise ModelCardError(f"{path.name}: expected a 'local' and a 'global' input")
        self._local, self._global = named["local"], named["global"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0

    def __call__(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray:
        n = len(local)
        if n == 0:
            return np.zeros(0, np.float32)
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._local, list(local.shape))
            self._interpreter.resize_tensor_input(self._global, list(global_.shape))
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._local, np.ascontiguousarray(local, dtype=np.float32))
        self._interpreter.set_tensor(self._global, np.ascontiguousarray(global_, dtype=np.float32))
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output)).reshape(-1)


class ArtefactCNN:
    def __init__(self, entry: dict[str, Any], path: Path, *, threads: int = 1) -> None:
        self.name = str(entry["name"])
        self.version = str(entry["version"])
        if entry.get("views") != card_views():
            raise ModelCardError(
                f"detector {self.name}: card views {entry.get('views')} but this code uses {card_views()}"
            )
        self._run = LiteRTPredictor(path, threads=threads)

    def logits(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(local_view(crops), global_view(crops)), np.float64)
