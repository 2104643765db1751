"""Assemble the model report from the artefacts each stage wrote: audit, split, training
history, model card, test evaluation and leave-one-source-out results.

    python -m deepfake_api.training.report --run runs/main --test docs/model/test \
        --loso runs/loso/loso.json --out docs/model
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from deepfake_api.model import CARD_NAME
from deepfake_api.training.evaluate import table
from deepfake_api.training.split import counts, read_csv


def _history_plot(history: Path, out: Path) -> list[dict[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with history.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("epoch", "").isdigit()]
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [float(r["loss"]) for r in rows])
    a.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key in [k for k in rows[0] if k.startswith("val_auc_")] if rows else []:
        b.plot(epochs, [float(r[key]) for r in rows], label=key.removeprefix("val_auc_"))
    b.set(xlabel="epoch", ylabel="validation ROC AUC", title="Validation AUC per source", ylim=(0.4, 1.0))
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    return rows


def build(run: Path, test_dir: Path, loso: Path | None, models: Path, out: Path, split: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    card: dict[str, Any] = json.loads((models / CARD_NAME).read_text())
    audit = json.loads((split.parent / "audit.json").read_text())
    history = _history_plot(run / "history.csv", out) if (run / "history.csv").exists() else []
    test = json.loads((test_dir / "eval.json").read_text())
    split_counts = counts(read_csv(split))
    val = card["metrics"]["validation"]
    lines = [
        f"# Model report — {card['name']} {card['version']}",
        "",
        f"Trained network `models/model.keras`: {card['file_bytes'] / 1e6:.2f} MB, sha256 `{card['sha256']}`.",
        *(
            [
                f"Served model `models/{rt['file']}` (its LiteRT export; largest logit difference from the Keras "
                f"network on the validation images and probes {rt['max_abs_logit_diff_vs_keras']:.1e}): "
                f"{rt['file_bytes'] / 1e6:.2f} MB, sha256 `{rt['sha256']}`. The test numbers below were "
                "measured through the served model.",
            ]
            if (rt := card.get("runtime"))
            else []
        ),
        f"Card: [`models/{CARD_NAME}`](../../models/{CARD_NAME}).",
        "",
        "## Data and split",
        "",
        f"{audit['images']} images from 3 sources; excluded by the audit: {audit['excluded']} "
        f"(see [audit](../../reports/data/audit.md)). Near-duplicate groups: {audit['groups']} "
        f"({audit['groups_with_copies']} with copies), dHash bits {audit['dup_bits']}.",
        "Split by group (near-duplicate group; dfdc source video), stratified by source and label, 80/10/10, "
        "seeded; validation/test roboflow images within 8 dHash bits of a training image dropped.",
        "",
        "| split | images | by source/label |",
        "|---|---|---|",
    ]
    for side, c in split_counts.items():
        lines.append(f"| {side} | {sum(c.values())} | " + ", ".join(f"{k} {v}" for k, v in c.items()) + " |")
    lines += [
        "",
        "## Model",
        "",
        "Two views of one image, both from `deepfake_api.preprocess` (the function the service calls): a "
        "160 px centre crop at native resolution (short side kept in [160, 320]; JPEGs decoded at the DCT "
        "scale 1/2-1/8 that keeps the short side >= 288) with a fixed Laplacian high-pass beside the pixels, "
        "through a fully convolutional branch (a plain full-resolution stem, then depthwise-separable "
        "convolutions; trained on random 96 px crops); and the whole image at 64 px through a second branch. "
        "Global pooling, concatenation, a small head, one logit. Trained from scratch (AdamW, cosine "
        "schedule, BCE), augmentations: flips, down-and-up scaling, JPEG re-compression, blur, colour "
        "jitter, noise.",
        "",
        f"Training: {json.dumps(card['training'].get('args', {}))}; best epoch (mean validation AUC): "
        f"{card['training'].get('best_epoch')}.",
        "",
        "![training](training.png)" if history else "",
        "",
        "## Calibration and decision rule (validation only)",
        "",
        f"{card['calibration']['method']}: temperature {card['calibration']['temperature']:.3f}, "
        f"bias {card['calibration'].get('bias', 0.0):.3f}. {card['decision']['rule']}.",
        f"Validation ({val['n']} images): ECE {val['ece']:.3f} (uncalibrated {val['ece_uncalibrated']:.3f}), "
        f"accuracy at 0.5 {val['accuracy']:.3f}, uncertain {val['uncertain_share']:.1%}, "
        f"accuracy outside the band {val['accuracy_outside_band'] or 0:.3f}.",
        "",
        "## Test split (group-disjoint; looked at once, after choosing everything on validation)",
        "",
        table(test),
        "",
        "![ROC](test/roc.png) ![Reliability](test/reliability.png)",
        "",
    ]
    if loso and loso.exists():
        rows = json.loads(loso.read_text())
        lines += [
            "## Leave-one-source-out (train on two sources, score every kept image of the third)",
            "",
            "| held-out source | images | ROC AUC | epochs (selected) |",
            "|---|---|---|---|",
            *[f"| {r['held_out']} | {r['n']} | {r['auc']:.3f} | {r['epochs']} ({r['selected_epoch']}) |" for r in rows],
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/main"))
    ap.add_argument("--test", type=Path, default=Path("docs/model/test"))
    ap.add_argument("--loso", type=Path, default=Path("docs/model/loso.json"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--split", type=Path, default=Path("reports/data/split.csv"))
    ap.add_argument("--out", type=Path, default=Path("docs/model"))
    ap.add_argument("--extra", type=Path, help="markdown appended verbatim (experiments table, notes)")
    args = ap.parse_args(argv)
    text = build(args.run, args.test, args.loso, args.models, args.out, args.split)
    if args.extra:
        text += "\n" + args.extra.read_text()
    (args.out / "REPORT.md").write_text(text)


if __name__ == "__main__":
    main()
