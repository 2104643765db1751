"""Fit the served model on the feature cache and write it with its card: heads, fusion, band.

Steps, on cached features of the aligned face crops (training/features.py):
1. leave-one-source-out, per detector: for every source, a head fitted without it (C chosen on
   the other sources' validation split) scores every face of it; fake-only sources are ranked
   against the real faces of the other sources' test split;
2. fusion and calibration: a logistic regression on the detectors' pooled hold-out logits (every
   source and label weighing the same): its output is the served score, so the score is honest
   on sources the model never saw, not only on those it trained on; each detector's own score is
   Platt scaling of its hold-out logits, fitted the same way;
3. the uncertain band: the widest confident region such that on *every* hold-out the accuracy
   outside the band is >= ACCURACY_OUTSIDE (a confident wrong answer is the worst output);
4. the served heads: fitted on the training split of all seven sources, C on validation, then
   scored once on the test split.

    python -m deepfake_api.training.ensemble --cache ~/.cache/deepfake-api/features --out models
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from deepfake_api import assets, faces, preprocess
from deepfake_api.assets import sha256_file
from deepfake_api.detectors.artefact import card_views
from deepfake_api.detectors.fusion import sigmoid
from deepfake_api.model import CARD_NAME
from deepfake_api.training import artefact, kinds, pooled
from deepfake_api.training.evalmetrics import ece, summary
from deepfake_api.training.heads import C_GRID, Cache, choose_c, load_cache

ACCURACY_FLOORS = (0.95, 0.93, 0.9)  # accuracy outside the band on every hold-out: the first one some band keeps
ACCURACY_OUTSIDE = ACCURACY_FLOORS[-1]  # the least the rule ever promises
MAX_REAL_CALLED_FAKE = 0.02  # on every hold-out, at most this share of genuine faces called fake
THRESHOLD = 0.5
NAME = "deepfake-face-ensemble"


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    kind: str  # the model.py detector kind
    keys: tuple[str, ...]
    what: str
    head: str = "linear"  # clip_head only: "linear" (heads.py) or "pooled" (pooled.py)


POOLED = DetectorSpec(
    "clip-vitb16-face-pooled",
    "clip_head",
    pooled.KEYS,
    "learned pooling over all 12 blocks of frozen CLIP ViT-B/16 (CLS + mean patch token per block, a shared "
    "projection, learned block weights, a small MLP; training/pooled.py) of the aligned face crop",
    head="pooled",
)
LINEAR = DetectorSpec(
    "clip-vitb16-face-linear",
    "clip_head",
    ("l3_mean", "l5_mean", "l7_mean", "l9_mean", "l11_cls"),  # the best linear probe of docs/model/EXPERIMENTS.md
    "logistic regression on frozen CLIP ViT-B/16 features of the aligned face crop",
)
# The linear probe beat the learned pooling on every leave-one-source-out hold-out of the nine sources
# (docs/model/EXPERIMENTS.md, 2026-12-05): POOLED stays available (--detectors clip-vitb16-face-pooled).
DETECTORS = (
    LINEAR,
    DetectorSpec(
        "face-spectrum-linear",
        "spectrum",
        ("spectrum",),
        "logistic regression on the azimuthally averaged log power spectrum of the inner face",
    ),
    DetectorSpec(
        "face-artefact-cnn",
        "artefact_cnn",
        (),
        "two-view CNN trained from scratch on the face crops and self-blended pseudo-fakes (training/artefact.py)",
    ),
)


def loso_logits(
    cache: Cache, keys: tuple[str, ...], sbi: bool, grid: tuple[float, ...] = C_GRID
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out source -> (labels, logits) of a head that never saw it."""
    out = {}
    for src in cache.sources:
        others = cache.dataset != src
        head = choose_c(cache, others & (cache.split == "train"), others & (cache.split == "val"), keys, sbi, grid)
        z = head.logits(cache.feats)
        m = _held_out(cache, src)
        out[src] = (cache.y[m], z[m])
        sys.stderr.write(f"loso {keys} {src}: C={head.c}\n")
    return out


def head_loso(
    cache: Cache, d: DetectorSpec, sbi: bool, tensors: pooled.Tensors | None, grid: tuple[float, ...] = C_GRID
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if d.head == "pooled":
        assert tensors is not None
        return pooled.loso_logits(cache, tensors, sbi=sbi)
    return loso_logits(cache, d.keys, sbi, grid)


def artefact_loso(cache: Cache, runs: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out source -> (labels, logits) of the artefact CNN run trained without it."""
    out = {}
    for src in cache.sources:
        z = artefact.read_logits(runs / artefact.run_name(src), cache.files)
        m = _held_out(cache, src)
        out[src] = (cache.y[m], z[m])
    return out


def _held_out(cache: Cache, src: str) -> np.ndarray:
    """Every face of `src`; a one-class source completed with the other sources' test faces of the other class."""
    return cache.held_out(src, np.ones(len(cache.y), bool), cache.split == "test")


def pool_hold_outs(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every hold-out's (labels, scores) together, with weights under which each source and label
    weighs the same in total."""
    ys, zs, ws = [], [], []
    for y, z in parts.values():
        for label in (0, 1):
            m = y == label
            if m.any():
                ys.append(y[m])
                zs.append(z[m])
                ws.append(np.full(int(m.sum()), 1.0 / m.sum()))
    return np.concatenate(ys), np.concatenate(zs), np.concatenate(ws)


def fit_balanced_lr(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, float]:
    """Weights and bias of a logistic regression on pooled hold-out logits (N x detectors), each
    source and label weighing the same."""
    y, z, w = pool_hold_outs(parts)
    lr = LogisticRegression(C=1e6).fit(z, y, sample_weight=w * len(w) / w.sum())
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def fit_fusion(stacked: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]) -> tuple[np.ndarray, float]:
    """Fusion weights >= 0: a detector whose hold-out logits would get a negative weight adds nothing
    a client could trust (it would count against its own verdict), so it is fused with weight 0 and
    the others are refitted; its own score is still reported per face."""
    active = list(range(len(names)))
    while True:
        w, bias = fit_balanced_lr({s: (y, z[:, active]) for s, (y, z) in stacked.items()})
        if (w > 0).all() or len(active) == 1:
            break
        worst = active[int(np.argmin(w))]
        sys.stderr.write(f"warning: the fusion gives {names[worst]} a weight of {w.min():.3f}: fused with 0\n")
        active.remove(worst)
    weights = np.zeros(len(names))
    weights[active] = w
    return weights, bias


@dataclass(frozen=True)
class BandCheck:
    """What a band (low, high) does on one hold-out: the shares each label takes and how often it is right."""

    real_called_real: float | None
    real_called_fake: float | None
    fake_called_fake: float | None
    fake_called_real: float | None
    accuracy_outside: float | None

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray, band: tuple[float, float]) -> BandCheck:
        real, fake = p[y == 0], p[y == 1]
        conf = (p <= band[0]) | (p >= band[1])
        return cls(
            float((real <= band[0]).mean()) if len(real) else None,
            float((real >= band[1]).mean()) if len(real) else None,
            float((fake >= band[1]).mean()) if len(fake) else None,
            float((fake <= band[0]).mean()) if len(fake) else None,
            float(((p[conf] >= THRESHOLD) == (y[conf] == 1)).mean()) if conf.any() else None,
        )

    def committed(self) -> float:
        """The mean share of faces given the right committed label, over the classes present."""
        parts = [v for v in (self.real_called_real, self.fake_called_fake) if v is not None]
        return float(np.mean(parts)) if parts else 0.0


def choose_band(
    parts: dict[str, tuple[np.ndarray, np.ndarray]], accuracy_floors: tuple[float, ...] = ACCURACY_FLOORS
) -> tuple[tuple[float, float], float]:
    """The decision rule, chosen on the leave-one-source-out hold-outs: the (low, high) that gives the
    most faces their right committed label (mean over sources of the share of reals called real and
    fakes called fake), under two promises kept on *every* hold-out: at most MAX_REAL_CALLED_FAKE of
    genuine faces called fake (a false accusation is the worst output), and accuracy outside the band
    at least the floor. The floor is the first of `accuracy_floors` that some band can keep on every
    hold-out (returned with the band): one weak source then lowers the floor, not every source's
    chance of an answer."""
    grid_low = np.round(np.arange(0.02, 0.5, 0.01), 2)
    grid_high = np.round(np.arange(0.51, 0.99, 0.01), 2)
    checks = {
        (float(lo), float(hi)): [BandCheck.of(y, p, (lo, hi)) for y, p in parts.values()]
        for lo in grid_low
        for hi in grid_high
    }
    for floor in accuracy_floors:
        best: tuple[float, tuple[float, float]] | None = None
        for band, cs in checks.items():
            if any(c.real_called_fake is not None and c.real_called_fake > MAX_REAL_CALLED_FAKE for c in cs):
                continue
            if any(c.accuracy_outside is not None and c.accuracy_outside < floor for c in cs):
                continue
            gain = float(np.mean([c.committed() for c in cs]))
            if best is None or gain > best[0]:
                best = (gain, band)
        if best is not None:
            return best[1], floor
    return (0.01, 0.99), accuracy_floors[-1]


def table(parts: dict[str, tuple[np.ndarray, np.ndarray]], band: tuple[float, float]) -> dict[str, Any]:
    """Per source: the summary metrics, plus the share of fakes called fake and of reals called fake."""
    out = {}
    for src, (y, p) in parts.items():
        row = summary(y, p, threshold=THRESHOLD, band=band)
        check = BandCheck.of(y, p, band)
        row["real_called_real"] = check.real_called_real
        row["real_called_fake"] = check.real_called_fake
        row["fake_called_fake"] = check.fake_called_fake
        row["fake_called_real"] = check.fake_called_real
        row["ece"] = ece(y, p)
        out[src] = row
    return out


FFPP = "ffpp-faces"
FFPP_METHODS = ("deepfakes", "face2face", "faceswap")


def method_aucs(files: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, float | int | None]]:
    """FaceForensics++ per manipulation method (the file name's prefix): each method's fakes against
    every real face of the same set."""
    from sklearn.metrics import roc_auc_score

    names = np.array([Path(str(f)).name for f in files])
    out: dict[str, dict[str, float | int | None]] = {}
    for method in FFPP_METHODS:
        fake = (y == 1) & np.char.startswith(names.astype(str), method + "_")
        m = fake | (y == 0)
        ok = fake.any() and (y == 0).any()
        out[method] = {"auc": float(roc_auc_score(y[m], p[m])) if ok else None, "fakes": int(fake.sum())}
    return out


def build(
    cache_dir: Path,
    split_csv: Path,
    out: Path,
    detectors: tuple[DetectorSpec, ...],
    sbi: bool,
    report: Path | None = None,
    artefact_runs: Path | None = None,
    c_grid: tuple[float, ...] = C_GRID,
    version: str | None = None,
) -> dict[str, Any]:
    keys = tuple(dict.fromkeys([*(k for d in detectors for k in d.keys), *kinds.KEYS]))
    cache = load_cache(cache_dir, split_csv, keys)
    if any(d.kind == "artefact_cnn" for d in detectors) and artefact_runs is None:
        raise ValueError("the artefact CNN's leave-one-source-out runs are needed (--artefact-runs)")
    counts = {
        s: {sp: int(((cache.dataset == s) & (cache.split == sp)).sum()) for sp in ("train", "val", "test")}
        for s in cache.sources
    }
    tensors = pooled.Tensors.of(cache) if any(d.head == "pooled" for d in detectors) else None
    held = {
        d.name: artefact_loso(cache, artefact_runs)
        if d.kind == "artefact_cnn" and artefact_runs is not None
        else head_loso(cache, d, sbi, tensors, c_grid)
        for d in detectors
    }
    stacked = {
        s: (held[detectors[0].name][s][0], np.stack([held[d.name][s][1] for d in detectors], 1)) for s in cache.sources
    }
    weights, bias = fit_fusion(stacked, [d.name for d in detectors])
    held_p = {s: (y, sigmoid(z @ weights + bias)) for s, (y, z) in stacked.items()}
    ffpp = {}
    if FFPP in cache.sources:
        ffpp["leave_one_source_out"] = method_aucs(cache.files[_held_out(cache, FFPP)], *held_p[FFPP])
    band, floor = choose_band(held_p)
    out.mkdir(parents=True, exist_ok=True)
    version = version or dt.date.today().strftime("%Y.%m.%d")
    entries, test_z, per_detector = [], [], {}
    for d in detectors:
        w1, b1 = fit_balanced_lr({s: (y, v[:, None]) for s, (y, v) in held[d.name].items()})
        entry: dict[str, Any] = {"name": d.name, "version": version, "kind": d.kind}
        if d.kind == "artefact_cnn":
            assert artefact_runs is not None
            z, own = artefact.read_logits(artefact_runs / artefact.ALL, cache.files), out / f"{d.name}.tflite"
            shutil.copyfile(artefact_runs / artefact.ALL / "model.tflite", own)
            trained = json.loads((artefact_runs / artefact.ALL / "run.json").read_text())
            entry.update(what=d.what, views=card_views(), self_blended_pseudo_fakes=trained["sbi"])
            entry["training"] = {k: trained[k] for k in ("epochs", "steps", "batch", "seed", "best_epoch")}
        elif d.head == "pooled":
            assert tensors is not None
            cfg = pooled.Config()
            ph, arrays, log = pooled.fit(cache, tensors, cache.split == "train", cache.split == "val", cfg, sbi=sbi)
            z, own = ph.logits_from_blocks(tensors.x), out / f"{d.name}.npz"
            np.savez(own, **arrays)  # type: ignore[arg-type]  # numpy stubs read **kwds as allow_pickle
            entry.update(what=d.what, self_blended_pseudo_fakes=sbi, degraded_copies=bool(cache.aug_feats))
            entry["training"] = {**cfg.__dict__, **log}
        else:
            head = choose_c(cache, cache.split == "train", cache.split == "val", d.keys, sbi, c_grid)
            z, own = head.logits(cache.feats), out / f"{d.name}.json"
            own.write_text(json.dumps(head.to_json()) + "\n")
            entry.update(what=f"{d.what}: {', '.join(d.keys)}", C=head.c, self_blended_pseudo_fakes=sbi)
        test_z.append(z)
        # a detector whose hold-out logits carry nothing (a constant) gets a flat calibration
        temperature = 1.0 / float(w1[0]) if abs(w1[0]) > 1e-12 else 1e12
        entry.update(file=own.name, sha256=sha256_file(own), calibration={"temperature": temperature, "bias": b1})
        if d.kind == "clip_head":
            clip = assets.ASSETS["clip"]
            entry["encoder"] = {"asset": "clip", "file": clip.file, "sha256": clip.sha256, "wheel": clip.wheel}
            entry["encoder"]["licence"] = clip.licence
        entries.append(entry)
        held_d = {s: (y, sigmoid(v * w1[0] + b1)) for s, (y, v) in held[d.name].items()}
        per_detector[d.name] = {"leave_one_source_out": {s: r["auc"] for s, r in table(held_d, band).items()}}
    test = cache.split == "test"
    fused_test = sigmoid(np.stack(test_z, 1) @ weights + bias)
    test_p = {}
    for s in cache.sources:
        m = cache.held_out(s, test, test)
        test_p[s] = (cache.y[m], fused_test[m])
        if s == FFPP:
            ffpp["test"] = method_aucs(cache.files[m], *test_p[s])
        for d, z in zip(detectors, test_z, strict=True):
            per_detector[d.name].setdefault("test", {})[s] = table({s: (cache.y[m], sigmoid(z[m]))}, band)[s]["auc"]
    card: dict[str, Any] = {
        "name": NAME,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "faces": {**faces.card_faces(), "sha256": assets.ASSETS["yunet"].sha256, "file": assets.ASSETS["yunet"].file},
        "input": preprocess.card_inputs(),
        "detectors": entries,
        "fusion": {
            "method": "logistic regression on the detectors' logits, fitted on pooled leave-one-source-out "
            "hold-out logits (every source and label weighs the same): its output is the calibrated score",
            "weights": {d.name: float(w) for d, w in zip(detectors, weights, strict=True)},
            "bias": bias,
        },
        "decision": {
            "threshold": THRESHOLD,
            "uncertain_band": list(band),
            "rule": (
                f"fake if score >= {band[1]}, real if score <= {band[0]}, else uncertain; chosen on the "
                f"leave-one-source-out hold-outs to give the most faces their right committed label while, on "
                f"every hold-out, at most {MAX_REAL_CALLED_FAKE:.0%} of genuine faces are called fake and the "
                f"accuracy outside the band is >= {floor:.0%}"
            ),
            "accuracy_floor": floor,
            "max_real_called_fake": MAX_REAL_CALLED_FAKE,
        },
        "data": {
            "sources": cache.sources,
            "faces_cached": counts,
            "self_blended_pseudo_fakes": int(len(cache.sbi_parent)),
            "split_file": split_csv.as_posix(),
            "split_sha256": hashlib.sha256(split_csv.read_bytes()).hexdigest(),
            "split_rule": "group-aware (near-duplicate dHash groups, dfdc source videos, celebahq pairs), "
            "stratified by source and label, 80/10/10; see reports/data/audit.md",
        },
        "metrics": {
            "leave_one_source_out": table(held_p, band),
            "test": table(test_p, band),
            "per_detector_auc": per_detector,
            "ffpp_methods": ffpp,
        },
        "limitations": (
            "Judged only on the seven sources of ../shared/datasets; other generators and manipulations "
            "may be scored with less confidence or wrongly: treat `uncertain` as no evidence either way. "
            "CLIP's model card cautions against deploying it untested; this head was tested as reported here."
        ),
    }
    kind_metrics = kinds.build(cache, out)
    if kind_metrics is not None:
        own = out / "face-kind.json"
        card["kind_head"] = {
            "file": own.name,
            "sha256": sha256_file(own),
            "what": "multinomial logistic regression on CLIP features of the fakes (training/kinds.py): "
            + ", ".join(kinds.KINDS)
            + f"; 'unknown' below {kind_metrics['unknown_below']}",
        }
        card["metrics"]["kinds"] = kind_metrics
    (out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    if report is not None:  # the scores behind the tables, for the report's plots
        report.mkdir(parents=True, exist_ok=True)
        scores = {
            part: {s: {"y": y.tolist(), "p": np.round(p, 5).tolist()} for s, (y, p) in parts.items()}
            for part, parts in (("leave_one_source_out", held_p), ("test", test_p))
        }
        (report / "holdout.json").write_text(json.dumps(scores) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--clip-keys", nargs="+", default=None, help="features of the linear CLIP head (with --detectors)")
    p.add_argument(
        "--detectors",
        nargs="+",
        default=None,
        help=f"of {[d.name for d in (*DETECTORS, POOLED)]}; default: all of {[d.name for d in DETECTORS]} "
        "(the artefact CNN only with --artefact-runs)",
    )
    p.add_argument("--no-sbi", action="store_true")
    p.add_argument(
        "--c-grid", type=float, nargs="+", default=None, help=f"C values of the linear heads (default {C_GRID})"
    )
    p.add_argument("--artefact-runs", type=Path, default=None, help="the runs of training/artefact.py")
    p.add_argument("--report", type=Path, default=None, help="also write the hold-out scores here (docs/model)")
    p.add_argument("--version", default=None, help="the model's version (default: today, YYYY.MM.DD)")
    args = p.parse_args(argv)
    names = args.detectors or [d.name for d in DETECTORS if d.kind != "artefact_cnn" or args.artefact_runs]
    specs = tuple(
        DetectorSpec(d.name, d.kind, tuple(args.clip_keys), d.what) if d is LINEAR and args.clip_keys else d
        for d in (*DETECTORS, POOLED)
        if d.name in names
    )
    grid = tuple(args.c_grid) if args.c_grid else C_GRID
    card = build(
        args.cache, args.split, args.out, specs, not args.no_sbi, args.report, args.artefact_runs, grid, args.version
    )
    sys.stderr.write(json.dumps({k: card[k] for k in ("decision", "fusion")}, indent=1) + "\n")
    sys.stderr.write(json.dumps(card["metrics"]["per_detector_auc"]) + "\n")
    for part in ("leave_one_source_out", "test"):
        for src, row in card["metrics"][part].items():
            sys.stderr.write(
                f"{part:22s} {src:16s} "
                + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
