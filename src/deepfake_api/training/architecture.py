"""The two-view CNN: a native-resolution local view and a low-resolution global view.

The local branch sees pixels plus a fixed Laplacian high-pass (the resampling traces of a
face swap live in high frequencies) and is fully convolutional with global pooling, so it
trains on random crops and scores the whole centre crop. The global branch sees the whole
image at 64 px, where pasted parts and blending show as layout. Inputs are RGB 0-255
floats; scaling happens inside the network, so no caller can get it wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake_api.preprocess import GLOBAL_SIZE


def _block(x: Any, filters: int, *, convs: int, name: str, norm: bool = True, separable: bool = False) -> Any:
    from keras import layers

    for i in range(1, convs + 1):
        conv = layers.SeparableConv2D if separable or i > 1 else layers.Conv2D
        if not norm:  # full-resolution stem: BatchNorm there costs more than the conv
            x = conv(filters, 3, padding="same", activation="relu", name=f"{name}_conv{i}")(x)
            continue
        x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def make_model(
    widths: tuple[int, ...] = (12, 32, 64, 128, 128),
    global_widths: tuple[int, ...] = (16, 32, 64, 96),
    separable_from: int = 1,
) -> Any:
    """Build the network; output is one logit per image (P(fake) after calibration).

    Local blocks from `separable_from` on use depthwise-separable convolutions only: the plain
    3x3 convolutions of blocks 1-4 were ~40 % of the inference cost (LiteRT, 2 threads:
    2.34 -> 1.40 ms per image, docs/model/REPORT.md). The full-resolution stem stays plain.
    """
    import keras
    from keras import layers

    local_in = keras.Input((None, None, 3), name="local")
    global_in = keras.Input((GLOBAL_SIZE, GLOBAL_SIZE, 3), name="global")

    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="local_scale")(local_in)
    hp = layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name="highpass")(x)
    x = layers.Concatenate(name="local_stack")([x, hp])
    for i, w in enumerate(widths):
        if i:
            x = layers.MaxPooling2D(2, name=f"local{i}_pool")(x)
        # one conv per block at high resolution (cost), two where the maps are small
        x = _block(x, w, convs=1 if i < 2 else 2, name=f"local{i}", norm=i > 0, separable=i >= separable_from)
    local_feat = layers.GlobalAveragePooling2D(name="local_gap")(x)

    g = layers.Rescaling(1 / 127.5, offset=-1.0, name="global_scale")(global_in)
    for i, w in enumerate(global_widths):
        if i:
            g = layers.MaxPooling2D(2, name=f"global{i}_pool")(g)
        g = _block(g, w, convs=1 if i < 2 else 2, name=f"global{i}", norm=i > 0)
    global_feat = layers.GlobalAveragePooling2D(name="global_gap")(g)

    h = layers.Concatenate(name="features")([local_feat, global_feat])
    h = layers.Dropout(0.3, name="dropout")(h)
    h = layers.Dense(64, activation="relu", name="head")(h)
    logit = layers.Dense(1, name="logit")(h)
    model = keras.Model({"local": local_in, "global": global_in}, logit, name="deepfake_cnn")
    kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32) * 2.0
    model.get_layer("highpass").set_weights([np.repeat(kernel[:, :, None, None], 3, axis=2)])
    return model
