"""training/variants.py: the probe variants measured on the yardstick behave as their descriptions say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfake_api.detectors.clip_head import LinearHead
from deepfake_api.training import variants
from deepfake_api.training.heads import Cache, training_rows

KEYS = ("l1_cls", "l2_cls")
DIM = 16


def _cache(
    seed: int = 0, far_source: bool = False, spread: float = 3.0, keys: tuple[str, str] = KEYS
) -> tuple[Cache, np.ndarray]:
    """Four sources with both labels and one fake-only source. The label lives on direction 0; every
    source shifts its faces along its own direction in the first key (what "which source" looks like),
    the second key is noise; `far_source`
    puts the fake-only source far from everything else."""
    rng = np.random.default_rng(seed)
    sources = ["a", "b", "c", "d", "e"]
    shift = rng.normal(size=(len(sources), 2 * DIM)) * spread
    shift[:, 0] = 0
    shift[:, DIM:] = 0  # the second key is noise: no label, no source
    dataset, y, split, rows = [], [], [], []
    for i, s in enumerate(sources):
        for label in (0, 1) if s != "e" else (1,):
            n = 120
            x = rng.normal(size=(n, 2 * DIM)) + shift[i]
            x[:, 0] += 2.5 * label
            if far_source and s == "e":
                x[:, 1:] += 4
            rows.append(x)
            dataset += [s] * n
            y += [label] * n
            split += ["train"] * 80 + ["val"] * 20 + ["test"] * 20
    x = np.concatenate(rows).astype(np.float32)
    feats = {keys[0]: x[:, :DIM], keys[1]: x[:, DIM:]}
    cache = Cache(
        files=np.array([f"f{i}" for i in range(len(x))]),
        dataset=np.array(dataset),
        y=np.array(y),
        split=np.array(split),
        feats=feats,
        sbi_parent=np.zeros(0, int),
        sbi_feats={},
        crops=[],
    )
    return cache, shift


def test_the_invariant_head_scores_a_real_face_the_same_wherever_the_sources_move_it() -> None:
    cache, _ = _cache()
    train = cache.split == "train"
    x, y, g = training_rows(cache, train, KEYS, sbi=False)
    head = variants.invariant_head(x, y, g, KEYS, c=1.0, k_real=3)
    plain = variants.invariant_head(x, y, g, KEYS, c=1.0, k_real=0)
    xs = (x - head.mean) / head.scale
    u = variants.source_directions(xs[g != "sbi"], y, g, 0, 3)
    assert u.shape == (3, 2 * DIM)
    # the served form (LinearHead reads the same coefficients) ignores those directions ...
    served = LinearHead(head.to_json())
    assert np.allclose(served.logits(cache.feats), head.logits(cache.feats))
    assert np.abs(u @ head.coef).max() < 1e-6 * np.abs(head.coef).max()
    # ... which the plain head reads
    assert np.abs(u @ plain.coef).max() > 1e-2 * np.abs(plain.coef).max()
    # and still separates real from fake on the test split
    from sklearn.metrics import roc_auc_score

    test = cache.split == "test"
    assert roc_auc_score(cache.y[test], head.logits(cache.feats)[test]) > 0.9


def test_group_robust_reweighting_gives_the_hardest_cell_the_most_weight() -> None:
    cache, _ = _cache(seed=1)
    # source "b"'s fakes carry only a faint label signal: the hardest cell
    faint = (cache.dataset == "b") & (cache.y == 1)
    for k in KEYS[:1]:
        cache.feats[k] = cache.feats[k].copy()
        cache.feats[k][faint, 0] -= 2.0
    x, y, g = training_rows(cache, cache.split == "train", KEYS, sbi=False)
    _, weights = variants.dro_head(x, y, g, KEYS, c=1.0, eta=2.0, rounds=4)
    assert max(weights, key=weights.__getitem__) == "b|1"
    _, flat = variants.dro_head(x, y, g, KEYS, c=1.0, eta=0.0, rounds=1)
    assert set(np.round(list(flat.values()), 6)) == {1.0}


def test_the_stack_fits_each_hold_outs_weights_without_it_and_never_weighs_against_a_verdict() -> None:
    cache, _ = _cache(seed=2)
    parts, weights = variants.stack_parts(cache, KEYS, grid=(1.0,))
    assert set(parts) == set(cache.sources) == set(weights)
    for w in weights.values():
        assert all(v >= 0 for v in w.values())
    # the label lives in the first key only: every fold leans on it
    assert all(w[KEYS[0]] > w[KEYS[1]] for w in weights.values())
    assert variants.summarise("stack", parts)["loso_mean"] > 0.9


def test_the_pooled_auc_weighs_every_source_and_label_alike() -> None:
    y = np.array([0, 1])
    big = (np.array([0] * 100 + [1] * 100), np.array([0.0] * 100 + [1.0] * 100))
    small = (y, np.array([2.0, 0.5]))  # ranked wrong, and above the big source
    pooled = variants.pooled_auc({"big": big, "small": small})
    # with weights by row count the big source would carry it (close to 1); weighed alike it does not
    assert 0.4 < pooled < 0.8


def test_novelty_marks_a_far_source_unfamiliar_and_a_familiar_one_not() -> None:
    raw = ("hand_a", "hand_b")  # hand-made features: no layer norm to fold the shift away
    cache, _ = _cache(seed=3, far_source=True, spread=0.0, keys=raw)  # the other sources look alike
    parts = variants.fold_parts(cache, lambda mask, c: variants._probe(cache, mask, raw, c), grid=(1.0,))
    table = variants.novelty(cache, parts, keys=raw, k=5)
    # "e" is completed with the other sources' test reals, which are familiar: about half its faces
    assert table["e"]["unfamiliar_share"] > 0.4
    assert table["a"]["unfamiliar_share"] < 0.35


def test_mirrored_features_are_joined_to_the_cache_by_file_and_a_missing_face_is_refused(tmp_path: Path) -> None:
    cache, _ = _cache(seed=4)
    rev = np.arange(len(cache.files))[::-1]  # the flip shards hold the faces in another order
    half = len(rev) // 2
    for i, rows in enumerate((rev[:half], rev[half:])):
        np.savez(
            tmp_path / f"flip-{i:04d}.npz", files=cache.files[rows], **{f"f_{k}": cache.feats[k][rows] for k in KEYS}
        )
    flipped = variants.load_flipped(tmp_path, cache, KEYS)
    for k in KEYS:
        assert np.array_equal(flipped[k], cache.feats[k])
    # scoring the same features twice is the probe itself
    same = variants.flip_parts(cache, flipped, KEYS, grid=(1.0,))
    probe = variants.fold_parts(cache, lambda mask, c: variants._probe(cache, mask, KEYS, c), grid=(1.0,))
    for s in cache.sources:
        assert np.allclose(same[s][1], probe[s][1])
    (tmp_path / "flip-0001.npz").unlink()
    with pytest.raises(SystemExit, match="no mirrored features"):
        variants.load_flipped(tmp_path, cache, KEYS)


def test_the_centroid_head_reads_only_the_balanced_mean_shift_and_is_served_as_a_linear_head() -> None:
    from sklearn.metrics import roc_auc_score

    cache, _ = _cache(seed=5)
    # source "a" has three times the faces of a cell elsewhere: each cell's mean must still weigh the same
    x, y, g = training_rows(cache, cache.split == "train", KEYS, sbi=False)
    x = np.concatenate([x, x[g == "a"], x[g == "a"]])
    y, g = np.concatenate([y, y[g == "a"], y[g == "a"]]), np.concatenate([g, g[g == "a"], g[g == "a"]])
    head = variants.centroid_head(x, y, g, KEYS, c=1.0)
    xs = (x - head.mean) / head.scale
    cells = sorted({(s, lab) for s, lab in zip(g.tolist(), y.tolist(), strict=True)})
    mu = [
        np.mean([xs[(g == s) & (y == lab)].mean(0) for s, lab in cells if lab == want_label], 0)
        for want_label in (0, 1)
    ]
    want = (mu[1] - mu[0]) / np.linalg.norm(mu[1] - mu[0])
    assert np.allclose(head.coef / np.linalg.norm(head.coef), want, atol=1e-6)
    assert float(head.coef @ want) > 0  # fakes score higher
    served = LinearHead(head.to_json())
    assert np.allclose(served.logits(cache.feats), head.logits(cache.feats))
    # within each source with both labels it ranks fakes above reals (the fake-only source's own
    # shift is in the mean difference too: across sources it is a weaker ranker, as in the real data)
    for src in "abcd":
        m = (cache.split == "test") & (cache.dataset == src)
        assert roc_auc_score(cache.y[m], head.logits(cache.feats)[m]) > 0.8


def test_the_early_stopped_head_fits_more_with_every_epoch_and_is_served_as_a_linear_head() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    cache, _ = _cache(seed=6)
    x, y, g = training_rows(cache, cache.split == "train", KEYS, sbi=False)
    heads = [variants.early_head(x, y, g, KEYS, epochs=e) for e in (0, 1, 40)]
    assert not heads[0].coef.any() and heads[0].intercept == 0.0  # no step taken: the zero start
    train = cache.split == "train"
    losses = [log_loss(cache.y[train], 1 / (1 + np.exp(-h.logits(cache.feats)[train])), labels=[0, 1]) for h in heads]
    assert losses[0] > losses[1] > losses[2]
    served = LinearHead(heads[2].to_json())
    assert np.allclose(served.logits(cache.feats), heads[2].logits(cache.feats))
    for src in "abcd":
        m = (cache.split == "test") & (cache.dataset == src)
        assert roc_auc_score(cache.y[m], heads[2].logits(cache.feats)[m]) > 0.8
    # a subset of at most 10 rows per (source, label) cell: a different fit, drawn the same way twice
    small = [variants.early_head(x, y, g, KEYS, epochs=2, per_cell=10) for _ in range(2)]
    assert np.array_equal(small[0].coef, small[1].coef)
    assert not np.allclose(small[0].mean, x.mean(axis=0))
