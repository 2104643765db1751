"""Score a labelled folder in-process or through a running service, and report per source:
ROC AUC, accuracy at the threshold, share labelled uncertain and accuracy outside it,
expected calibration error. Writes eval.json, REPORT.md, roc.png and reliability.png.

    deepfake-api evaluate ../shared/datasets --split test --out reports/test
    deepfake-api evaluate ./my-images --url http://127.0.0.1:8000      # real/ and fake/ subfolders
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from deepfake_api.client import ScoreError, make_scorer
from deepfake_api.training.data import Item, read_items
from deepfake_api.training.evalmetrics import summary
from deepfake_api.training.split import read_csv

DEFAULT_SPLIT_FILE = Path("reports/data/split.csv")


def select(items: list[Item], split: str, split_file: Path = DEFAULT_SPLIT_FILE) -> list[Item]:
    if not split:
        return items
    side = {r["file"]: r["split"] for r in read_csv(split_file)}
    return [it for it in items if side.get(it.file) == split]


def score_items(items: list[Item], *, url: str | None, model_path: Path, batch: int = 8) -> list[dict[str, Any]]:
    """Every item through the service (or in-process), in batches of `batch`, with a progress bar on stderr."""
    scorer = make_scorer(url, model_path)
    rows = []
    bar = tqdm(total=len(items), unit="img", file=sys.stderr, mininterval=0.5, desc="evaluate")
    try:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            try:
                bodies = scorer.score_many([(it.path.name, it.path.read_bytes()) for it in chunk])
            except ScoreError as exc:
                bodies = [{"error": str(exc)} for _ in chunk]
            for it, body in zip(chunk, bodies, strict=True):
                row = {"file": it.file, "dataset": it.dataset, "y": it.y}
                rows.append({**row, "error": body["error"]} if "error" in body else {**row, **_pick(body)})
            bar.update(len(chunk))
    finally:
        bar.close()
        scorer.close()
    return rows


def _pick(body: dict[str, Any]) -> dict[str, Any]:
    if body["label"] == "no_face":  # not scored: counted, never mixed into the metrics
        return {"no_face": True, "model": body["model"]["version"]}
    return {
        "score": body["score"],
        "label": body["label"],
        "threshold": body["threshold"],
        "band": body["uncertain_band"],
        "model": body["model"]["version"],
    }


def by_source(rows: list[dict[str, Any]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(source, labels, scores) for each source of the scored rows, then "overall"."""
    ok = [r for r in rows if "score" in r]
    out = []
    for src in sorted({r["dataset"] for r in ok}) + ["overall"]:
        sel = [r for r in ok if src in ("overall", r["dataset"])]
        out.append((src, np.array([r["y"] for r in sel], np.float64), np.array([r["score"] for r in sel])))
    return out


def compute(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "score" in r]
    if not ok:
        return {"errors": len(rows), "per_source": {}, "overall": {}}
    threshold, band = ok[0]["threshold"], tuple(ok[0]["band"])
    out: dict[str, Any] = {
        "threshold": threshold,
        "uncertain_band": list(band),
        "model_version": ok[0]["model"],
        "errors": sum(1 for r in rows if "error" in r),
        "error_kinds": dict(Counter(r["error"].split(":")[0] for r in rows if "error" in r)),
        "no_face": sum(1 for r in rows if r.get("no_face")),
        "per_source": {},
    }
    for src, y, s in by_source(ok):
        metrics = summary(y, s, threshold=threshold, band=band)  # type: ignore[arg-type]
        if src == "overall":
            out["overall"] = metrics
        else:
            out["per_source"][src] = metrics
    return out


def _plots(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    groups = by_source(rows)
    fig, ax = plt.subplots(figsize=(5, 5))
    for src, y, s in groups:
        if len(set(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=src, linewidth=2 if src == "overall" else 1)
    _save(
        fig,
        ax,
        out / "roc.png",
        "lower right",
        xlabel="false positive rate (real called fake)",
        ylabel="true positive rate",
        title="ROC",
    )

    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, 11)
    for src, y, s in groups:
        idx = np.clip(np.digitize(s, edges[1:-1]), 0, 9)
        xs = [s[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        ax.plot(xs, ys, "o-", label=src, linewidth=2 if src == "overall" else 1, markersize=3)
    _save(
        fig,
        ax,
        out / "reliability.png",
        "upper left",
        xlabel="predicted P(fake)",
        ylabel="observed share fake",
        title="Reliability (bins with >= 5 images)",
    )


def _save(fig: Any, ax: Any, path: Path, legend: str, **labels: str) -> None:
    """Diagonal reference, labels, legend; write the figure and free it."""
    import matplotlib.pyplot as plt

    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(**labels)
    ax.legend(loc=legend, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def table(result: dict[str, Any]) -> str:
    cols = ["n", "auc", "accuracy", "uncertain_share", "accuracy_outside_band", "ece"]
    lines = ["| source | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for src, m in [*result["per_source"].items(), ("overall", result["overall"])]:
        lines.append(f"| {src} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def write_report(result: dict[str, Any], rows: list[dict[str, Any]], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _plots(rows, out)
    band = result.get("uncertain_band")
    text = [
        f"# {title}",
        "",
        f"Model version {result.get('model_version')}; threshold {result.get('threshold')} on the calibrated "
        f"P(fake); `uncertain` inside {band}. Errors (images not scored): {result['errors']}.",
        "",
        table(result),
        "",
        "![ROC](roc.png) ![Reliability](reliability.png)",
        "",
    ]
    (out / "REPORT.md").write_text("\n".join(text))


def run(data: Path, *, url: str | None, model_path: Path, out: Path, split: str = "") -> dict[str, Any]:
    items = select(read_items(data), split)
    if not items:
        raise SystemExit(f"no labelled images found in {data} (split {split or 'all'})")
    rows = score_items(items, url=url, model_path=model_path)
    result = compute(rows)
    where = url or f"in-process {model_path}"
    write_report(result, rows, out, f"Evaluation of {data} ({split or 'all images'}) via {where}")
    print(table(result))  # noqa: T201
    return result
