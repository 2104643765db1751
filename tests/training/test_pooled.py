"""The learned block pooling: its backward pass, its export, what it learns, and the served head's
token gradients (the heatmap's input)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_api.detectors.pooled_head import PooledHead, block_keys, block_tensor
from deepfake_api.training import pooled


def _numeric(f, arr: np.ndarray, idx: tuple[int, ...], eps: float = 1e-3) -> float:  # type: ignore[no-untyped-def]
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


def test_the_backward_pass_is_the_gradient_of_the_loss() -> None:
    rng = np.random.default_rng(0)
    net = pooled.Net(6, 3, pooled.Config(hidden=8, hidden2=4), rng)
    net.p["a"] = rng.normal(size=3).astype(np.float32)
    x = rng.normal(size=(5, 3, 6)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1], np.float32)
    w = rng.random(5).astype(np.float32) + 0.1
    drop = (rng.random((5, 8)) > 0.3).astype(np.float32)
    _, g = net.loss_and_grads(x, y, w, drop)
    for k, arr in net.p.items():
        net.p[k] = arr.astype(np.float64)
    for k in net.p:
        for idx in (tuple(0 for _ in net.p[k].shape), tuple(s - 1 for s in net.p[k].shape)):
            num = _numeric(lambda: net.loss_and_grads(x, y, w, drop)[0], net.p[k], idx)
            assert g[k][idx] == pytest.approx(num, rel=2e-2, abs=2e-5), k


def _feats(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        k: (rng.normal(size=(n, 768)) + shift * (k == "l7_mean")).astype(np.float32) for k in block_keys(pooled.BLOCKS)
    }


def test_the_exported_head_scores_what_the_network_scored_with_the_projection_folded_in() -> None:
    rng = np.random.default_rng(1)
    cfg = pooled.Config(hidden=16, hidden2=8, rank=32)
    x = block_tensor(_feats(rng, 64), pooled.BLOCKS)
    mu, basis = pooled.principal(x, cfg.rank)
    net = pooled.Net(cfg.rank, x.shape[1], cfg, rng)
    head = PooledHead(pooled.export(net, pooled.BLOCKS, mu, basis))
    xp = ((x - mu) @ basis).astype(np.float32)
    h = pooled.gelu(xp @ net.p["w1"] + net.p["b1"])
    z = np.einsum("nbh,b->nh", h, net.alpha())
    direct = pooled.gelu(z @ net.p["w2"] + net.p["b2"]) @ net.p["w3"] + net.p["b3"][0]
    assert np.allclose(head.logits_from_blocks(x), direct, atol=1e-4)


def test_token_gradients_are_the_heads_derivative_through_each_layer_norm() -> None:
    rng = np.random.default_rng(2)
    cfg = pooled.Config(hidden=16, hidden2=8, rank=32)
    feats = _feats(rng, 3)
    x = block_tensor(feats, pooled.BLOCKS)
    mu, basis = pooled.principal(x, cfg.rank)
    head = PooledHead(pooled.export(pooled.Net(cfg.rank, 12, cfg, rng), pooled.BLOCKS, mu, basis))
    grads = head.token_gradients(feats)
    assert set(grads) == set(head.keys)
    for key, j in (("l7_mean", 5), ("l0_cls", 700), ("l11_mean", 0)):
        f64 = {k: v.astype(np.float64) for k, v in feats.items()}
        num = _numeric(lambda f=f64: float(head.logits(f)[1]), f64[key], (1, j), eps=1e-2)
        assert grads[key][1, j] == pytest.approx(num, rel=5e-2, abs=1e-4), key


def test_the_head_learns_a_signal_in_one_block() -> None:
    """A fake is shifted along one block's mean token; the fitted head ranks held-back faces by it."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    n = 300
    y = np.repeat([0, 1], n // 2)
    feats = {k: rng.normal(size=(n, 768)).astype(np.float32) for k in block_keys(pooled.BLOCKS)}
    feats["l7_mean"][y == 1, :20] += 4.0  # strong enough to be among the top principal directions
    x = block_tensor(feats, pooled.BLOCKS)
    cfg = pooled.Config(hidden=16, hidden2=8, rank=64, epochs=40, batch=32)
    train = np.arange(n) % 3 != 0
    mu, basis = pooled.principal(x[train], cfg.rank)
    net = pooled.Net(cfg.rank, 12, cfg, rng)
    xt = ((x[train] - mu) @ basis).astype(np.float32)
    for _ in range(cfg.epochs):
        for i in range(0, len(xt), cfg.batch):
            sl = slice(i, i + cfg.batch)
            _, g = net.loss_and_grads(xt[sl], y[train][sl].astype(np.float32), np.ones(len(xt[sl]), np.float32))
            net.step(g, 1e-2, 0.0)
    head = PooledHead(pooled.export(net, pooled.BLOCKS, mu, basis))
    assert roc_auc_score(y[~train], head.logits_from_blocks(x[~train])) > 0.9
    assert int(np.argmax(head.alpha)) == 7, "the block that carries the signal weighs most"
