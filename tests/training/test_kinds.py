"""The kind head's training: which kind each source's fakes are, and a head that names them."""

from __future__ import annotations

import numpy as np

from deepfake_api.detectors.kind import KindHead
from deepfake_api.training import kinds
from deepfake_api.training.heads import Cache


def test_each_fake_gets_its_sources_kind_and_ffpp_its_methods() -> None:
    assert kinds.kind_of("ffpp-faces", "ffpp-faces/fake/face2face_001.jpg") == "reenactment"
    assert kinds.kind_of("ffpp-faces", "ffpp-faces/fake/deepfakes_001.jpg") == "face_swap"
    assert kinds.kind_of("sd-portraits", "sd-portraits/fake/a.jpg") == "diffusion_generated"
    assert kinds.kind_of("ffhq-gan", "ffhq-gan/fake/stylegan_1.jpg") == "gan_generated"
    assert kinds.kind_of("somewhere-else", "x.jpg") is None


def _cache(rng: np.random.Generator) -> Cache:
    sources = ["dfdc-faces", "stylegan3", "sd-portraits", "roboflow-ciplab"]
    n = 60
    dataset = np.repeat(sources, n)
    split = np.tile(np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10), len(sources))
    feats = {k: rng.normal(size=(len(dataset), 768)).astype(np.float32) for k in kinds.KEYS}
    for i, _ in enumerate(sources):  # each kind shifts its own block of l11_cls
        feats["l11_cls"][dataset == sources[i], i * 20 : i * 20 + 20] += 3.0
    return Cache(
        files=np.array([f"{d}/fake/{i}.jpg" for i, d in enumerate(dataset)]),
        dataset=dataset,
        y=np.ones(len(dataset), int),
        split=split,
        feats=feats,
        sbi_parent=np.zeros(0, int),
        sbi_feats={},
        crops=[],
    )


def test_the_fitted_head_names_the_kind_of_test_fakes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = _cache(np.random.default_rng(0))
    kind = kinds.labels(cache)
    spec = kinds.choose(cache, kind, cache.split == "train", cache.split == "val")
    head = KindHead(spec)
    test = cache.split == "test"
    p = head.probabilities(cache.feats)[test]
    assert (p.argmax(1) == kind[test]).mean() > 0.9
    # kinds absent from training (reenactment) are never likely
    assert p[:, kinds.KINDS.index("reenactment")].max() < 1e-6
    result = kinds.build(cache, tmp_path)
    assert result is not None and (tmp_path / "face-kind.json").is_file()
    assert result["unknown_below"] in kinds.UNKNOWN_GRID
    assert set(result["leave_one_source_out"]) == set(cache.sources)
