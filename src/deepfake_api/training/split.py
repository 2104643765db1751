"""Group-aware train/validation/test split, stratified by dataset and label.

Reads the audit (`audit.csv`): excluded images stay out, and every near-duplicate group
(and every dfdc source video) lands on exactly one side. As a second guard, a validation or
test image of a dataset listed in `GUARD_BITS` that lies within that many bits (dHash,
any flip/rotation) of a training image is dropped from evaluation. Writes `split.csv`.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
GUARD_BITS = {"roboflow-ciplab": 8}
SEED = 20261125


def assign_groups(rows: list[dict[str, str]], seed: int = SEED) -> dict[str, str]:
    """Group id -> split; groups are shuffled within (dataset, majority label) strata."""
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    dataset: dict[str, str] = {}
    for r in rows:
        if not r["excluded"]:
            labels[r["group"]][r["label"]] += 1
            dataset[r["group"]] = r["dataset"]
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for g in sorted(labels):
        strata[(dataset[g], labels[g].most_common(1)[0][0])].append(g)
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for key in sorted(strata):
        groups = strata[key]
        rng.shuffle(groups)
        n_val = round(len(groups) * FRACTIONS["val"])
        n_test = round(len(groups) * FRACTIONS["test"])
        for i, g in enumerate(groups):
            out[g] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def _hashes(row: dict[str, str]) -> np.ndarray:
    return np.array([int(h, 16) for h in row["dhash"].split()], dtype=np.uint64)


def make_split(rows: list[dict[str, str]], seed: int = SEED) -> list[dict[str, str]]:
    side = assign_groups(rows, seed)
    out = []
    for r in rows:
        split = "excluded" if r["excluded"] else side[r["group"]]
        out.append({**r, "split": split})
    for ds, bits in GUARD_BITS.items():
        train = [r for r in out if r["dataset"] == ds and r["split"] == "train"]
        if not train:
            continue
        train_h = np.stack([_hashes(r) for r in train])
        for r in out:
            if r["dataset"] == ds and r["split"] in ("val", "test"):
                base = _hashes(r)[0]
                if int(np.bitwise_count(np.bitwise_xor(train_h, base)).min()) <= bits:
                    r["excluded"] = f"within-{bits}-bits-of-train"
                    r["split"] = "excluded"
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_split(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["file", "dataset", "label", "group", "split", "excluded", "sha256"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        table[r["split"]][f"{r['dataset']}/{r['label']}"] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--audit", type=Path, default=Path("reports/data/audit.csv"))
    ap.add_argument("--out", type=Path, default=Path("reports/data/split.csv"))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    rows = make_split(read_csv(args.audit), args.seed)
    write_split(rows, args.out)
    for split, c in counts(rows).items():
        print(split, sum(c.values()), c)  # noqa: T201


if __name__ == "__main__":
    main()
