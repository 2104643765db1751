"""training/ln_pilot.py: the TensorFlow CLS path of block 11 is the block, and it can be tuned."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from deepfake_api import assets
from deepfake_api.training.clip_weights import block_forward, block_weights
from deepfake_api.training.ln_pilot import LN_KEYS, cls_block


def test_the_tensorflow_cls_path_equals_the_numpy_block_and_has_layer_norm_gradients() -> None:
    w = block_weights(assets.path("clip"), 11)
    rng = np.random.default_rng(0)
    h = (rng.normal(size=(3, 197, 768)) * rng.uniform(0.5, 3.0, size=(1, 1, 768))).astype(np.float32)
    want = block_forward(h, w)[:, 0]
    block = cls_block(w)
    ln = [tf.Variable(w[k]) for k in LN_KEYS]
    with tf.GradientTape() as tape:
        got = block(tf.constant(h), *ln)
        target = tf.reduce_sum(got * tf.constant(rng.normal(size=(3, 768)).astype(np.float32)))
    assert np.allclose(got.numpy(), want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    grads = tape.gradient(target, ln)
    for g in grads:
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).max() > 0
    # a moved LayerNorm moves the output: the tuning has something to tune
    ln[2].assign(ln[2] * 1.1)
    assert not np.allclose(block(tf.constant(h), *ln).numpy(), want, rtol=1e-3)
