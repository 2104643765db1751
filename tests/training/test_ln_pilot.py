"""training/ln_pilot.py: the TensorFlow CLS path of block 11 is the block, and it can be tuned."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from deepfake_api import assets
from deepfake_api.training.clip_weights import block_forward, block_weights
from deepfake_api.training.ln_pilot import LN_KEYS, cls_block, encoder_tail


def _hidden(seed: int, n: int) -> np.ndarray:
    """Hidden states with CLIP's spread of channel scales (some channels several times the others)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 197, 768)) * rng.uniform(0.5, 3.0, size=(1, 1, 768))).astype(np.float32)


def _assert_equal_and_tunable(f, h: np.ndarray, ln: list, want: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """f(h, *ln) equals `want` and every LayerNorm parameter has a finite, non-zero gradient."""
    probe = tf.constant(np.random.default_rng(9).normal(size=want.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        got = f(tf.constant(h), *ln)
        target = tf.reduce_sum(got * probe)
    assert np.allclose(got.numpy(), want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    for g in tape.gradient(target, ln):
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).max() > 0


def test_the_tensorflow_cls_path_equals_the_numpy_block_and_has_layer_norm_gradients() -> None:
    w = block_weights(assets.path("clip"), 11)
    h = _hidden(0, 3)
    want = block_forward(h, w)[:, 0]
    block = cls_block(w)
    ln = [tf.Variable(w[k]) for k in LN_KEYS]
    _assert_equal_and_tunable(block, h, ln, want)
    # a moved LayerNorm moves the output: the tuning has something to tune
    ln[2].assign(ln[2] * 1.1)
    assert not np.allclose(block(tf.constant(h), *ln).numpy(), want, rtol=1e-3)


def test_the_tail_of_two_blocks_equals_the_numpy_blocks_in_turn_and_tunes_both() -> None:
    ws = [block_weights(assets.path("clip"), k) for k in (10, 11)]
    h = _hidden(1, 2)
    after_10 = block_forward(h, ws[0])
    want = block_forward(after_10, ws[1])[:, 0]
    full = cls_block(ws[0], full=True)(tf.constant(h), *[tf.constant(ws[0][k]) for k in LN_KEYS]).numpy()
    assert full.shape == h.shape
    assert np.allclose(full, after_10, rtol=1e-4, atol=1e-3 * np.abs(after_10).max())
    # the first block's LayerNorms reach the output through every token of the second
    _assert_equal_and_tunable(encoder_tail(ws), h, [tf.Variable(w[k]) for w in ws for k in LN_KEYS], want)
