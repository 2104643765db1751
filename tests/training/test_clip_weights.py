"""training/clip_weights.py: the fp32 block rebuilt from the served int8 encoder computes what the
ONNX graph computes, on the ONNX's own hidden states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deepfake_api import assets
from deepfake_api.detectors.encoder import ClipEncoder
from deepfake_api.training import clip_weights
from tests.utils.images import smooth_images

BLOCKS = (3, 11)
# fp32 against the int8 graph (which rounds every linear layer's input to uint8): per-token cosine
# measured >= 0.996 on these images; a transposed matrix, a wrong head split or a dropped q/v/fc1
# bias falls to <= 0.95.
MIN_COSINE = 0.99
# With that rounding emulated the mean per-token cosine is >= 0.999998; quick_gelu swapped for GELU
# falls to <= 0.99978 (block 11) and 0.9989 (block 3).
MIN_MEAN_COSINE_INT8 = 0.9999


def hidden_states(images: np.ndarray, layers: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The ONNX's residual stream after each of `layers`: N x 197 x 768 (CLS first)."""
    encoder = ClipEncoder(assets.path("clip"), layers=layers, sha256=assets.ASSETS["clip"].sha256)
    feats = encoder.features(images, tokens=True)
    return {k: np.concatenate([feats[f"l{k}_cls"][:, None], feats[f"l{k}_tokens"]], axis=1) for k in layers}


def token_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray((a64 * b64).sum(-1) / (np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)))


def int8_per_crop(h: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's activation rounding emulated one crop at a time, as the encoder runs the graph
    (one scale per tensor: a batch would share it)."""
    return np.concatenate([clip_weights.block_forward(h[i : i + 1], w, int8_activations=True) for i in range(len(h))])


@pytest.fixture(scope="module")
def states() -> dict[int, np.ndarray]:
    return hidden_states(smooth_images(4), tuple(sorted({j for k in BLOCKS for j in (k - 1, k)})))


@pytest.mark.parametrize("k", BLOCKS)
def test_block_forward_reproduces_the_onnx_block(states: dict[int, np.ndarray], k: int) -> None:
    w = clip_weights.block_weights(assets.path("clip"), k)
    assert {key: a.shape for key, a in w.items()} == {
        **{f"{p}_{s}": (768,) for p in ("ln1", "ln2") for s in ("w", "b")},
        **{f"{p}_w": (768, 768) for p in ("q", "k", "v", "out")},
        **{f"{p}_b": (768,) for p in ("q", "k", "v", "out")},
        "fc1_w": (768, 3072),
        "fc1_b": (3072,),
        "fc2_w": (3072, 768),
        "fc2_b": (768,),
    }
    assert all(a.dtype == np.float32 for a in w.values())
    ours = clip_weights.block_forward(states[k - 1], w)
    assert ours.shape == states[k].shape == (4, 197, 768) and ours.dtype == np.float32
    cos = token_cosine(ours, states[k])
    assert cos.min() >= MIN_COSINE, f"block {k}: per-token cosine min {cos.min():.5f}"
    int8 = token_cosine(int8_per_crop(states[k - 1], w), states[k])
    assert int8.mean() >= MIN_MEAN_COSINE_INT8 and int8.min() >= MIN_COSINE, (int8.mean(), int8.min())


def test_a_transposed_matrix_a_missing_bias_or_the_wrong_activation_is_caught(
    states: dict[int, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thresholds are tight enough to see the mistakes this module could make."""
    k = 11
    w = clip_weights.block_weights(assets.path("clip"), k)
    for broken in ({**w, "q_w": np.ascontiguousarray(w["q_w"].T)}, {**w, "fc1_b": np.zeros_like(w["fc1_b"])}):
        assert token_cosine(clip_weights.block_forward(states[k - 1], broken), states[k]).min() < MIN_COSINE

    def gelu(x: np.ndarray) -> np.ndarray:  # GELU (tanh form) instead of CLIP's quick_gelu
        return np.asarray(0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))), dtype=np.float32)

    monkeypatch.setattr(clip_weights, "_quick_gelu", gelu)
    int8 = token_cosine(int8_per_crop(states[k - 1], w), states[k])
    assert int8.mean() < MIN_MEAN_COSINE_INT8


def test_fake_quant_is_uint8_per_tensor_and_keeps_zero() -> None:
    x = np.array([[-1.0, 0.0, 0.5, 3.0]], dtype=np.float32)
    y = clip_weights.fake_quant_uint8(x)
    step = np.float32(4.0 / 255)
    assert y[0, 1] == 0 and np.abs(y - x).max() <= step / 2 + 1e-6
    assert np.allclose(y / step, np.round(y / step), atol=1e-3)
    assert len(np.unique(clip_weights.fake_quant_uint8(np.linspace(-1, 3, 10_000, dtype=np.float32)))) == 256


def test_layer_norm_weights_are_the_initializers_bit_for_bit() -> None:
    k = 5
    model = onnx.load(str(assets.path("clip")))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if f".layers.{k}.layer_norm" in t.name}
    w = clip_weights.block_weights(assets.path("clip"), k)
    for key, name in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
        for part, suffix in (("w", "weight"), ("b", "bias")):
            expected = inits[f"vision_model.encoder.layers.{k}.{name}.{suffix}"]
            assert w[f"{key}_{part}"].dtype == expected.dtype == np.float32
            assert w[f"{key}_{part}"].tobytes() == expected.tobytes()


@pytest.mark.parametrize("k", [-1, 12, 100])
def test_a_block_index_outside_the_encoder_raises(k: int) -> None:
    with pytest.raises(ValueError, match=r"block index must lie in 0\.\.11"):
        clip_weights.block_weights(assets.path("clip"), k)


def test_a_file_that_is_not_the_clip_encoder_raises_with_the_missing_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no initializer 'vision_model\.encoder\.layers\.0\.layer_norm1\.weight'"):
        clip_weights.block_weights(assets.path("yunet"), 0)
    with pytest.raises(FileNotFoundError):
        clip_weights.block_weights(tmp_path / "absent.onnx", 0)
