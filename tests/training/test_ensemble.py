"""training/ensemble.py: the fusion and the band, fitted on hold-out logits, and the fusion served as fitted
(detectors/fusion.py)."""

from __future__ import annotations

import numpy as np

from deepfake_api.detectors.fusion import Fusion
from deepfake_api.training import ensemble


def _hold_outs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three sources; detector 0 informative everywhere, detector 1 a noisy copy of it, detector 2
    informative on one source only and inverted on the others."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, src in enumerate(("a", "b", "c")):
        y = np.repeat([0, 1], 200)
        signal = (2 * y - 1) * 1.5 + rng.normal(0, 1, len(y))
        z1 = signal + rng.normal(0, 2, len(y))
        z2 = (1 if k == 0 else -1) * (2 * y - 1) * 0.8 + rng.normal(0, 1, len(y))
        out[src] = (y, np.stack([signal, z1, z2], 1))
    return out


def test_the_fusion_never_weighs_a_detector_against_its_own_verdict() -> None:
    stacked = _hold_outs()
    plain, _ = ensemble.fit_balanced_lr(stacked)
    assert plain[2] < 0, "the unconstrained fit would count detector 2 backwards"
    weights, bias = ensemble.fit_fusion(stacked, ["main", "copy", "inverted"])
    assert weights[2] == 0 and (weights[:2] > 0).all()
    fusion = Fusion({"main": weights[0], "copy": weights[1], "inverted": weights[2]}, bias)
    y, z = stacked["a"]
    p = fusion({"main": z[:, 0], "copy": z[:, 1], "inverted": z[:, 2]})
    assert np.allclose(p, 1 / (1 + np.exp(-(z @ weights + bias))))
    assert ((p >= 0.5) == (y == 1)).mean() > 0.85


def test_the_decision_rule_keeps_its_promises_on_every_hold_out_and_commits_as_much_as_they_allow() -> None:
    rng = np.random.default_rng(1)
    parts = {}
    for src, spread in (("easy", 3.0), ("medium", 1.5), ("hard", 0.7)):
        y = np.repeat([0, 1], 400)
        parts[src] = (y, 1 / (1 + np.exp(-((2 * y - 1) * spread + rng.normal(0, 1, len(y))))))
    (low, high), floor = ensemble.choose_band(parts)
    assert 0 < low < 0.5 < high < 1
    assert floor in ensemble.ACCURACY_FLOORS
    checks = [ensemble.BandCheck.of(y, p, (low, high)) for y, p in parts.values()]
    for c in checks:
        assert c.accuracy_outside is not None and c.accuracy_outside >= floor
        assert c.real_called_fake is not None and c.real_called_fake <= ensemble.MAX_REAL_CALLED_FAKE
    # the easy source commits far more than the hard one: the weak source lowers no one else's answers
    assert checks[0].committed() > checks[2].committed() + 0.2
    assert checks[0].real_called_real > 0.5 and checks[0].fake_called_fake > 0.5
    # no neighbouring band keeps the same promises with more right answers
    gain = np.mean([c.committed() for c in checks])
    for lo, hi in ((low - 0.01, high), (low + 0.01, high), (low, high - 0.01), (low, high + 0.01)):
        if not (0 < lo < 0.5 < hi < 1):
            continue
        cs = [ensemble.BandCheck.of(y, p, (lo, hi)) for y, p in parts.values()]
        keeps = all(c.accuracy_outside >= floor and c.real_called_fake <= ensemble.MAX_REAL_CALLED_FAKE for c in cs)
        assert not keeps or np.mean([c.committed() for c in cs]) <= gain + 1e-12
