"""The explanation maths without the app: the head's gradients against finite differences, the
patch map's exactness for a linear head, the kind head's file, and detector agreement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepfake_api.detectors.clip_head import LinearHead, layer_norm, layer_norm_vjp, patch_contributions
from deepfake_api.detectors.encoder import GRID
from deepfake_api.detectors.kind import KindHead
from deepfake_api.errors import ModelCardError
from deepfake_api.explain import agreement, normalised
from deepfake_api.model import DeepfakeModel
from tests.conftest import MODEL_PATH

KINDS = ["face_swap", "expression_reenactment", "gan_generated", "diffusion_generated", "edited_photo"]


def _head(d: int, keys: tuple[str, ...], *, normalise: bool, seed: int = 0) -> LinearHead:
    rng = np.random.default_rng(seed)
    n = d * len(keys)
    return LinearHead(
        {
            "keys": list(keys),
            "layer_norm": normalise,
            "mean": rng.normal(0, 0.1, n).tolist(),
            "scale": rng.uniform(0.5, 2, n).tolist(),
            "coef": rng.normal(0, 1, n).tolist(),
            "intercept": 0.3,
        }
    )


def test_layer_norm_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    v, a = rng.normal(size=(4, 40)), rng.normal(size=40)
    eps = 1e-6
    numeric = np.zeros_like(v)
    for j in range(v.shape[1]):
        step = np.zeros_like(v)
        step[:, j] = eps
        numeric[:, j] = (layer_norm(v + step) @ a - layer_norm(v - step) @ a) / (2 * eps)
    assert np.allclose(layer_norm_vjp(v, a), numeric, atol=1e-6 * np.abs(numeric).max())


def test_head_gradients_match_finite_differences_of_its_logit() -> None:
    rng = np.random.default_rng(2)
    head = _head(16, ("l3_mean", "l5_cls"), normalise=True)
    feats = {"l3_mean": rng.normal(size=(3, 16)), "l5_cls": rng.normal(size=(3, 16))}
    grads = head.token_gradients(feats)
    eps = 1e-2  # the head's design matrix is float32: central differences need a step well above its precision
    for key in head.keys:
        for j in range(16):
            up = {k: v.copy() for k, v in feats.items()}
            down = {k: v.copy() for k, v in feats.items()}
            up[key][:, j] += eps
            down[key][:, j] -= eps
            numeric = (head.logits(up) - head.logits(down)) / (2 * eps)
            assert np.allclose(grads[key][:, j], numeric, atol=2e-3)


def test_without_layer_norm_the_patch_map_is_exactly_each_tokens_share_of_the_logit() -> None:
    """A linear head on mean tokens: logit(tokens) - logit(every token replaced by the mean) = 0 and
    moving one token moves the logit by exactly its cell's change."""
    rng = np.random.default_rng(3)
    d, t = 8, GRID * GRID
    head = _head(d, ("l7_mean",), normalise=False)
    tokens = rng.normal(size=(2, t, d))
    feats = {"l7_mean": tokens.mean(axis=1), "l7_tokens": tokens}
    grid = patch_contributions(head.token_gradients(feats), feats)
    assert grid.shape == (2, GRID, GRID)
    assert np.allclose(grid.sum(axis=(1, 2)), 0.0, atol=1e-9)  # relative to the mean token
    moved = tokens.copy()
    moved[:, 17] += rng.normal(size=(2, d))
    feats2 = {"l7_mean": moved.mean(axis=1), "l7_tokens": moved}
    grid2 = patch_contributions(head.token_gradients(feats2), feats2)
    change = head.logits(feats2) - head.logits(feats)
    # the cell's own change, plus its effect on every other cell through the mean
    assert np.allclose(grid2.reshape(2, -1)[:, 17] - grid.reshape(2, -1)[:, 17], change * (t - 1) / t)


def test_cls_features_add_nothing_to_the_map() -> None:
    rng = np.random.default_rng(4)
    head = _head(8, ("l11_cls",), normalise=True)
    feats = {"l11_cls": rng.normal(size=(1, 8)), "l11_tokens": rng.normal(size=(1, GRID * GRID, 8))}
    assert not patch_contributions(head.token_gradients(feats), feats).any()


def test_normalised_grid_lies_in_0_1_with_the_hottest_cell_at_1() -> None:
    raw = np.random.default_rng(5).normal(size=(GRID, GRID))
    grid, top = normalised(raw)
    g = np.asarray(grid)
    assert g.min() >= 0 and g.max() == 1.0 and top == pytest.approx(raw.max(), abs=1e-6)
    assert np.unravel_index(g.argmax(), g.shape) == np.unravel_index(raw.argmax(), raw.shape)
    assert normalised(-np.abs(raw)) == (np.zeros((GRID, GRID)).tolist(), 0.0)


def test_agreement_flags_a_strong_split_only() -> None:
    assert agreement({"a": 0.95, "b": 0.05, "c": 0.5}).status == "disagree"  # type: ignore[union-attr]
    split = agreement({"a": 0.95, "b": 0.05})
    assert split is not None and split.says_fake == ["a"] and split.says_real == ["b"]
    assert agreement({"a": 0.95, "b": 0.6}).status == "agree"  # type: ignore[union-attr]
    assert agreement({}) is None


def kind_spec(keys: list[str], d: int, *, unknown_below: float = 0.3, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    n = d * len(keys)
    return {
        "kinds": KINDS,
        "keys": keys,
        "layer_norm": True,
        "mean": rng.normal(0, 0.05, n).tolist(),
        "scale": rng.uniform(0.5, 1.5, n).tolist(),
        "coef": rng.normal(0, 0.05, (len(KINDS), n)).tolist(),
        "intercept": rng.normal(0, 0.1, len(KINDS)).tolist(),
        "unknown_below": unknown_below,
    }


def test_kind_head_probabilities_and_unknown() -> None:
    rng = np.random.default_rng(6)
    head = KindHead(kind_spec(["l11_cls"], 768))
    p = head.probabilities({"l11_cls": rng.normal(size=(3, 768))})
    assert p.shape == (3, len(KINDS)) and np.allclose(p.sum(axis=1), 1.0)
    sure = KindHead(kind_spec(["l11_cls"], 768, unknown_below=0.0)).guess(p[0])
    assert sure.name == KINDS[int(p[0].argmax())]
    assert KindHead(kind_spec(["l11_cls"], 768, unknown_below=1.0)).guess(p[0]).name == "unknown"


@pytest.mark.parametrize(
    "bad",
    [
        {"coef": [[0.0] * 768] * 4},  # K rows != kinds
        {"kinds": KINDS[:4] + ["unknown"]},
        {"intercept": None},
    ],
)
def test_malformed_kind_heads_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ModelCardError):
        KindHead({**kind_spec(["l11_cls"], 768), **bad})


def card_with_kind_head(tmp: Path, spec: dict[str, object], *, sha256: str | None = None) -> Path:
    """A copy of the committed card and its files in `tmp`, with a `kind_head` entry (the lead's format)."""
    for f in MODEL_PATH.parent.iterdir():
        if f.is_file():
            shutil.copy(f, tmp / f.name)
    (tmp / "face-kind.json").write_text(json.dumps(spec))
    from deepfake_api.assets import sha256_file

    card = json.loads(MODEL_PATH.read_text())
    card["kind_head"] = {"file": "face-kind.json", "sha256": sha256 or sha256_file(tmp / "face-kind.json")}
    (tmp / "model_card.json").write_text(json.dumps(card, indent=2))
    return tmp / "model_card.json"


def test_a_kind_head_with_the_wrong_sha256_is_refused(tmp_path: Path) -> None:
    card = card_with_kind_head(tmp_path, kind_spec(["l11_cls"], 768), sha256="0" * 64)
    with pytest.raises(ModelCardError, match="kind head"):
        DeepfakeModel(card).load()
