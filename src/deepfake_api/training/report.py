"""The model report (docs/model/REPORT.md) and its plots, from the card and the hold-out scores
that training/ensemble.py wrote: leave-one-source-out and the test split, per source, per detector.

    python -m deepfake_api.training.report --models models --out docs/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_api.model import CARD_NAME
from deepfake_api.training.evalmetrics import ece

COLUMNS = (
    ("auc", "ROC AUC"),
    ("accuracy", "accuracy at 0.5"),
    ("uncertain_share", "uncertain"),
    ("accuracy_outside_band", "accuracy outside the band"),
    ("real_called_real", "reals called real"),
    ("real_called_fake", "reals called fake"),
    ("fake_called_fake", "fakes called fake"),
    ("fake_called_real", "fakes called real"),
    ("ece", "ECE"),
)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def metrics_table(rows: dict[str, dict[str, Any]]) -> str:
    head = "| source | n | " + " | ".join(t for _, t in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for src, r in rows.items():
        lines.append(f"| {src} | {r['n']} | " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def detector_table(
    per_detector: dict[str, dict[str, dict[str, float | None]]], fused: dict[str, Any], part: str
) -> str:
    sources = list(fused)
    lines = ["| detector | " + " | ".join(sources) + " | mean |", "|" + "---|" * (len(sources) + 2)]
    for name, parts in per_detector.items():
        vals = [parts[part].get(s) for s in sources]
        mean = np.mean([v for v in vals if v is not None])
        lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in vals) + f" | {mean:.3f} |")
    vals = [fused[s]["auc"] for s in sources]
    mean = np.mean([v for v in vals if v is not None])
    lines.append("| **fused** | " + " | ".join(_fmt(v) for v in vals) + f" | {mean:.3f} |")
    return "\n".join(lines)


def kinds_table(kinds: dict[str, Any] | None) -> str:
    if not kinds:
        return "No kind head (the data names fewer than two kinds)."
    lines = [
        "| held-out source | fakes | true kind(s) | kind seen in training | named right | named wrong | unknown "
        "| named most |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for src, r in kinds["leave_one_source_out"].items():
        true = ", ".join(f"{k} {v}" for k, v in r["true_kinds"].items())
        lines.append(
            f"| {src} | {r['fakes']} | {true} | {'yes' if r['kind_seen_in_training'] else 'no'} | "
            f"{_fmt(r['named_right'])} | {_fmt(r['named_wrong'])} | {_fmt(r['unknown'])} | {r['top_named'] or '–'} |"
        )
    test = ["| test split | named right | named wrong | unknown |", "|---|---|---|---|"] + [
        f"| {s} | {_fmt(r['named_right'])} | {_fmt(r['named_wrong'])} | {_fmt(r['unknown'])} |"
        for s, r in kinds["test"].items()
    ]
    return (
        "\n".join(lines)
        + f"\n\n'unknown' below a top probability of {kinds['unknown_below']} (chosen on these hold-outs: "
        "named right minus twice named wrong, averaged over sources); C = " + f"{kinds['C']}.\n\n" + "\n".join(test)
    )


def plots(holdout: dict[str, dict[str, dict[str, list[float]]]], band: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    for part, title in (("leave_one_source_out", "leave-one-source-out hold-outs"), ("test", "test split")):
        fig, (roc, rel) = plt.subplots(1, 2, figsize=(10, 4.5))
        for src, d in holdout[part].items():
            y, p = np.asarray(d["y"]), np.asarray(d["p"])
            if len(set(y.tolist())) == 2:
                fpr, tpr, _ = roc_curve(y, p)
                roc.plot(fpr, tpr, label=src, linewidth=1)
        roc.plot([0, 1], [0, 1], ":", color="grey")
        roc.set(xlabel="reals called fake", ylabel="fakes called fake", title=f"ROC, {title}")
        roc.legend(fontsize=7, loc="lower right")
        y = np.concatenate([d["y"] for d in holdout[part].values()])
        p = np.concatenate([d["p"] for d in holdout[part].values()])
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        xs = [p[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        rel.plot(xs, ys, "o-", label="pooled")
        rel.plot([0, 1], [0, 1], ":", color="grey")
        rel.axvspan(band[0], band[1], color="orange", alpha=0.15, label="uncertain band")
        rel.set(xlabel="score (calibrated P(fake))", ylabel="share fake", title=f"Reliability, {title}")
        rel.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(out / f"{part}.png", dpi=110)
        plt.close(fig)


def ffpp_table(methods: dict[str, dict[str, dict[str, Any]]]) -> str:
    """FaceForensics++ per method: AUC of that method's fakes against the same set's real faces."""
    if not methods:
        return "(no FaceForensics++ faces in this model's data)"
    names = list(next(iter(methods.values())))
    lines = ["| part | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for part, label in (("leave_one_source_out", "leave-one-source-out"), ("test", "test split")):
        if part in methods:
            row = methods[part]
            cells = [f"{_fmt(row[n]['auc'])} ({row[n]['fakes']} fakes)" for n in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_floor(parts: dict[str, dict[str, list[float]]]) -> tuple[float, float, float, dict[str, float]]:
    """The lowest worst-source ECE any one recalibration sigmoid(a * logit(p) + b) reaches on these
    hold-outs (a grid over a, b): how much of the per-source ECE a better calibration could remove."""
    data = {
        s: (np.asarray(d["y"], float), np.clip(np.asarray(d["p"], float), 1e-6, 1 - 1e-6)) for s, d in parts.items()
    }
    best: tuple[float, float, float, dict[str, float]] | None = None
    for a in np.linspace(0.2, 3.0, 29):
        for b in np.linspace(-2.0, 2.0, 41):
            e = {s: ece(y, 1 / (1 + np.exp(-(a * np.log(p / (1 - p)) + b)))) for s, (y, p) in data.items()}
            if best is None or max(e.values()) < best[0]:
                best = (max(e.values()), float(a), float(b), e)
    assert best is not None
    return best


def build(models: Path, out: Path) -> str:
    card = json.loads((models / CARD_NAME).read_text())
    holdout = json.loads((out / "holdout.json").read_text())
    band = card["decision"]["uncertain_band"]
    plots(holdout, band, out)
    m = card["metrics"]
    floor, a, b, floor_by_source = calibration_floor(holdout["leave_one_source_out"])
    floor_cells = ", ".join(f"{k} {v:.3f}" for k, v in floor_by_source.items())
    detectors = "\n".join(f"- **{d['name']}** ({d['kind']}): {d['what']}" for d in card["detectors"])
    counts = card["data"]["faces_cached"]
    count_lines = ["| source | train | val | test |", "|---|---|---|---|"] + [
        f"| {s} | {c['train']} | {c['val']} | {c['test']} |" for s, c in counts.items()
    ]
    sbi_used = (
        "yes"
        if any(d["self_blended_pseudo_fakes"] for d in card["detectors"])
        else "no, they lowered leave-one-source-out AUC: see EXPERIMENTS.md"
    )
    text = f"""# Model report: {card["name"]} {card["version"]}

Generated by `python -m deepfake_api.training.report` from `models/{CARD_NAME}` and
`docs/model/holdout.json`, both written by `python -m deepfake_api.training.ensemble`.

## What is served

Every face is found (YuNet), aligned onto a 5-point template ({card["faces"]["crop_size"]} px,
margin {card["faces"]["margin"]}) and read by each detector:

{detectors}

Fusion: {card["fusion"]["method"]}; weights {json.dumps(card["fusion"]["weights"])}, bias
{card["fusion"]["bias"]:.3f}. Decision: {card["decision"]["rule"]}.

## Data

Faces with a detected face and a split side (the split is group-aware: {card["data"]["split_rule"]});
{card["data"]["self_blended_pseudo_fakes"]} self-blended pseudo-fakes cached from training reals
(used by the heads: {sbi_used}).

{chr(10).join(count_lines)}

## Leave-one-source-out (the yardstick for sources the model never saw)

For each source, every detector and the fusion are fitted without it and score all of its
faces; fake-only sources (sd-portraits, stylegan3) are ranked against the other sources' test
reals, the real-only source (utkface) against the other sources' test fakes. The fusion, the
calibration and the decision rule are fitted on these hold-out scores.

{metrics_table(m["leave_one_source_out"])}

AUC per detector and fused:

{detector_table(m["per_detector_auc"], m["leave_one_source_out"], "leave_one_source_out")}

![leave-one-source-out](leave_one_source_out.png)

How far calibration alone could go: the best single recalibration of the served score,
sigmoid(a · logit(score) + b) over a grid, lowers the worst source's ECE on these hold-outs only to
{floor:.3f} (a = {a:.1f}, b = {b:.1f}: {floor_cells}). The sources disagree on where a given score
sits (one source's fakes score like another's reals), so an ECE of 0.05 on every unseen source needs
better ranking, not another calibration.

## Test split (sources seen in training, faces never seen)

{metrics_table(m["test"])}

AUC per detector and fused:

{detector_table(m["per_detector_auc"], m["test"], "test")}

![test split](test.png)

## What kind of manipulation (the kind head)

Per held-out source, what the kind head trained without that source calls its fakes:

{kinds_table(m.get("kinds"))}

## FaceForensics++ per manipulation method

{ffpp_table(m.get("ffpp_methods", {}))}

## Limitations

{card["limitations"]}
"""
    (out / "REPORT.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--out", type=Path, default=Path("docs/model"))
    args = p.parse_args(argv)
    build(args.models, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
