"""Pilot of issue 25's second idea on one fold: tune the LayerNorms of the encoder's last blocks.

CLIP blocks `--first-block`..11 are rebuilt in TensorFlow from the served int8 file
(`clip_weights.block_weights`, fp32): every token through the blocks before the last, only the CLS
token's path through block 11 (keys and values of all 197 tokens, the query, the MLP and the output
of the CLS token alone: ~1/6 of a block's cost). Their LayerNorms' gains and biases are trainable
beside a linear head on the l11 CLS feature (per-sample layer norm, standardised, as the served head
reads it); everything else stays as served. The same head on the *frozen* blocks, same faces, same
schedule, is the baseline. Inputs are the encoder's own hidden states before the first tuned block
(the int8 graph, `ClipEncoder(layers=(first - 1,))`), for a balanced subset of the training faces of
the other sources (`--per-cell` per source and label) and every face of the held-out set.

    python -m deepfake_api.training.ln_pilot --cache <features> --hold-out sd-portraits [--first-block 8]

Prints one JSON line per epoch and run: the held-out AUC and how far the LayerNorms moved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from deepfake_api import assets
from deepfake_api.training.clip_weights import HEAD_DIM, HEADS, LN_EPS, QUICK_GELU, WIDTH, block_weights

LN_KEYS = ("ln1_w", "ln1_b", "ln2_w", "ln2_b")


def cls_block(w: dict[str, np.ndarray], *, full: bool = False) -> Any:
    """f(h, ln1_w, ln1_b, ln2_w, ln2_b) -> the CLS token after the block (N x 768), differentiable in
    the LayerNorm parameters; h: N x T x 768 hidden states before the block. With `full`, every
    token's state after the block (N x T x 768), for a block that later blocks read."""
    import tensorflow as tf

    c = {k: tf.constant(v, tf.float32) for k, v in w.items()}

    def ln(x: Any, g: Any, b: Any) -> Any:
        mu = tf.reduce_mean(x, -1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mu), -1, keepdims=True)
        return (x - mu) / tf.sqrt(var + LN_EPS) * g + b

    def f(h: Any, g1: Any, b1: Any, g2: Any, b2: Any) -> Any:
        x = ln(h, g1, b1)
        t = tf.shape(h)[1]
        k = tf.reshape(x @ c["k_w"] + c["k_b"], (-1, t, HEADS, HEAD_DIM))
        v = tf.reshape(x @ c["v_w"] + c["v_b"], (-1, t, HEADS, HEAD_DIM))
        if full:
            q = tf.reshape(x @ c["q_w"] + c["q_b"], (-1, t, HEADS, HEAD_DIM))
            s = tf.nn.softmax(tf.einsum("bqhd,bthd->bhqt", q, k) * HEAD_DIM**-0.5, -1)
            o = tf.reshape(tf.einsum("bhqt,bthd->bqhd", s, v), (-1, t, WIDTH))
            y = h + o @ c["out_w"] + c["out_b"]
        else:
            q = tf.reshape(x[:, 0] @ c["q_w"] + c["q_b"], (-1, HEADS, HEAD_DIM))
            s = tf.nn.softmax(tf.einsum("bhd,bthd->bht", q, k) * HEAD_DIM**-0.5, -1)
            o = tf.reshape(tf.einsum("bht,bthd->bhd", s, v), (-1, WIDTH))
            y = h[:, 0] + o @ c["out_w"] + c["out_b"]
        a = ln(y, g2, b2) @ c["fc1_w"] + c["fc1_b"]
        return y + (a * tf.sigmoid(QUICK_GELU * a)) @ c["fc2_w"] + c["fc2_b"]

    return f


def encoder_tail(ws: list[dict[str, np.ndarray]]) -> Any:
    """f(h, *layer_norms) -> the CLS token after the last of the given consecutive blocks (the
    encoder's block 11); h: hidden states before the first of them; layer_norms: 4 per block
    (LN_KEYS order). Every block but the last runs on all tokens, the last on the CLS path only."""
    blocks = [cls_block(w, full=i < len(ws) - 1) for i, w in enumerate(ws)]

    def f(h: Any, *ln: Any) -> Any:
        for i, block in enumerate(blocks):
            h = block(h, *ln[4 * i : 4 * i + 4])
        return h

    return f


def _sample_ln(y: Any) -> Any:
    import tensorflow as tf

    mu = tf.reduce_mean(y, -1, keepdims=True)
    return (y - mu) / (tf.math.reduce_std(y, -1, keepdims=True) + 1e-6)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a measuring run on the feature cache
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--hold-out", default="sd-portraits")
    p.add_argument("--per-cell", type=int, default=110)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--first-block", type=int, default=11, help="tune the LayerNorms of this block and every later one")
    p.add_argument("--tuned-only", action="store_true", help="skip the frozen baseline (same head, same faces)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from deepfake_api.detectors.encoder import ClipEncoder
    from deepfake_api.training.artefact import load_crops
    from deepfake_api.training.ensemble import _held_out
    from deepfake_api.training.heads import _balanced_weights, load_cache

    t0 = time.monotonic()
    cache = load_cache(args.cache, args.split, ("l11_cls",))
    rng = np.random.default_rng(0)
    train = (cache.dataset != args.hold_out) & (cache.split == "train")
    rows: list[int] = []
    for s in sorted(set(cache.dataset[train].tolist())):
        for label in (0, 1):
            idx = np.flatnonzero(train & (cache.dataset == s) & (cache.y == label))
            if len(idx):
                rows += rng.choice(idx, min(args.per_cell, len(idx)), replace=False).tolist()
    tr, ho = np.array(sorted(rows)), np.flatnonzero(_held_out(cache, args.hold_out))
    crops = load_crops(cache).faces
    first = args.first_block
    if not 1 <= first <= 11:
        p.error("--first-block must lie in 1..11")
    enc = ClipEncoder(assets.path("clip"), layers=(first - 1,), sha256=assets.ASSETS["clip"].sha256, threads=2)

    def states(idx: np.ndarray) -> np.ndarray:
        f = enc.features(crops[idx], tokens=True)
        return np.concatenate([f[f"l{first - 1}_cls"][:, None], f[f"l{first - 1}_tokens"]], 1).astype(np.float16)

    h_tr = np.concatenate([states(tr[i : i + 16]) for i in range(0, len(tr), 16)])
    h_ho = np.concatenate([states(ho[i : i + 16]) for i in range(0, len(ho), 16)])
    ws = [block_weights(assets.path("clip"), k) for k in range(first, 12)]
    block = encoder_tail(ws)
    init = [tf.constant(w[k]) for w in ws for k in LN_KEYS]

    def feats(h: np.ndarray, ln: list[Any]) -> np.ndarray:
        return np.concatenate(
            [block(tf.constant(h[i : i + 16], tf.float32), *ln).numpy() for i in range(0, len(h), 16)]
        )

    f0 = feats(h_tr, init)
    z0 = _sample_ln(tf.constant(f0)).numpy()
    mean, scale = z0.mean(0), z0.std(0) + 1e-6
    y = cache.y[tr].astype(np.float32)
    sw = _balanced_weights(cache.y[tr], cache.dataset[tr]).astype(np.float32)
    sys.stderr.write(f"{len(tr)} training faces, {len(ho)} held out, {time.monotonic() - t0:.0f} s\n")
    for tune in (True,) if args.tuned_only else (False, True):
        tf.random.set_seed(0)
        ln = [tf.Variable(v) for v in init]
        hw, hb = tf.Variable(tf.zeros(WIDTH)), tf.Variable(0.0)
        params = [hw, hb, *(ln if tune else [])]
        opt = tf.keras.optimizers.Adam(args.lr)
        order_rng = np.random.default_rng(0)
        for epoch in range(args.epochs):
            order = order_rng.permutation(len(tr))
            for i in range(0, len(order), 32):
                b = order[i : i + 32]
                with tf.GradientTape() as tape:
                    f = block(tf.constant(h_tr[b], tf.float32), *ln) if tune else tf.constant(f0[b])
                    logit = tf.linalg.matvec((_sample_ln(f) - mean) / scale, hw) + hb
                    loss = tf.reduce_mean(sw[b] * tf.nn.sigmoid_cross_entropy_with_logits(y[b], logit))
                    loss += args.l2 * tf.reduce_sum(tf.square(hw))
                    if tune:
                        loss += args.l2 * tf.add_n(
                            [tf.reduce_sum(tf.square(a - a0)) for a, a0 in zip(ln, init, strict=True)]
                        )
                opt.apply_gradients(zip(tape.gradient(loss, params), params, strict=True))
            z = ((_sample_ln(tf.constant(feats(h_ho, ln))).numpy() - mean) / scale) @ hw.numpy() + hb.numpy()
            moved = float(np.mean([np.abs(a.numpy() - a0.numpy()).mean() for a, a0 in zip(ln, init, strict=True)]))
            row = {"tune_layer_norms": tune, "blocks": f"{first}-11", "epoch": epoch + 1, "held_out": args.hold_out}
            row["s"] = round(time.monotonic() - t0)
            row.update(auc=round(float(roc_auc_score(cache.y[ho], z)), 4), ln_moved=round(moved, 5))
            sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
