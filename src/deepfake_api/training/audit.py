"""Data audit: near-blank images, near-duplicate groups (dHash with flips/rotations), and
identical bytes under both labels. Writes `audit.csv` (one row per item) and `audit.md`.

Near-duplicates: a 64-bit difference hash of the grey image at 9x8, computed for the
8 flips/rotations; two images of one dataset whose closest variants differ in at most
`DUP_BITS[dataset]` bits are joined (union-find). Measured on our data: at 4 bits the
roboflow-ciplab export falls into groups of 3 (1058 of them: the rotated/brightened/blurred
copies), while at 6 bits groups chain to 203 images. Distinct face crops (dfdc, lfw) lie only
3-16 bits apart, and 4 bits chains 95 different dfdc faces together, so there only
(almost) identical images, at most 2 bits, are joined.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deepfake_api.preprocess import decode_image
from deepfake_api.training.data import DEFAULT_DATA_DIR, Item, read_items

DUP_BITS = {"roboflow-ciplab": 4}
# ffpp-faces publishes no video ids and one manifest group for everything: its groups come from
# dHash alone (consecutive frames of one clip). `<method>_roi_<n>` does not name a clip: measured,
# dHash distances between youtube_roi_n and deepfakes_roi_n are those of random pairs (median 19 bits).
FFPP = {"ffpp-faces"}
DEFAULT_DUP_BITS = 2
BLANK_STD = 3.0  # grey-level standard deviation (0-255) under which an image is blank


@dataclass(frozen=True)
class Fingerprint:
    hashes: np.ndarray  # uint64[8], one per flip/rotation
    std: float
    error: str = ""


def _dhash(gray: Image.Image) -> int:
    a = np.asarray(gray.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def fingerprint_bytes(data: bytes) -> Fingerprint:
    try:
        rgb = decode_image(data, min_side=1).rgb
    except Exception as exc:  # an undecodable file is reported, not fatal
        return Fingerprint(np.zeros(8, np.uint64), 0.0, type(exc).__name__)
    gray = Image.fromarray(rgb).convert("L")
    small = gray.resize((64, 64), Image.Resampling.BILINEAR)
    std = float(np.asarray(small, np.float32).std())
    variants = []
    for flip in (False, True):
        g = gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else gray
        for rot in (0, 90, 180, 270):
            variants.append(_dhash(g.rotate(rot, expand=True) if rot else g))
    return Fingerprint(np.array(variants, dtype=np.uint64), std)


def _fingerprint_path(path: Path) -> Fingerprint:
    return fingerprint_bytes(path.read_bytes())


def near_duplicate_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose canonical hash is within max_bits of any variant of the other."""
    base = hashes[:, 0]
    pairs = []
    for i in range(len(base)):
        x = np.bitwise_xor(hashes[i + 1 :, :], base[i])
        dist = np.bitwise_count(x).min(axis=1)
        pairs.extend((i, i + 1 + int(j)) for j in np.nonzero(dist <= max_bits)[0])
    return pairs


def union_groups(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def audit(items: list[Item], *, workers: int = 2) -> list[dict[str, str]]:
    """One row per item: blank flag, dHash, near-duplicate group id, exclusion reason."""
    with ProcessPoolExecutor(workers) as pool:
        prints = list(pool.map(_fingerprint_path, [it.path for it in items], chunksize=64))
    hashes = np.stack([p.hashes for p in prints])
    dup_root: dict[int, int] = {}
    for dataset in sorted({it.dataset for it in items}):
        ok = [
            i
            for i, (it, p) in enumerate(zip(items, prints, strict=True))
            if it.dataset == dataset and not p.error and p.std >= BLANK_STD
        ]
        pairs = near_duplicate_pairs(hashes[ok], DUP_BITS.get(dataset, DEFAULT_DUP_BITS))
        roots = union_groups(len(ok), pairs)
        dup_root.update({ok[k]: ok[r] for k, r in enumerate(roots)})
    labels_by_sha: dict[str, set[str]] = defaultdict(set)
    for it in items:
        labels_by_sha[it.sha256].add(it.label)
    rows = []
    for i, (it, fp) in enumerate(zip(items, prints, strict=True)):
        reason = ""
        if fp.error:
            reason = f"undecodable:{fp.error}"
        elif fp.std < BLANK_STD:
            reason = "near-blank"
        elif len(labels_by_sha[it.sha256]) > 1:
            reason = "same-bytes-both-labels"
        root = dup_root.get(i, i)
        group = f"{it.dataset}:{it.group}" if it.group and it.dataset not in FFPP else f"dup:{items[root].file}"
        rows.append(
            {
                "file": it.file,
                "dataset": it.dataset,
                "label": it.label,
                "sha256": it.sha256,
                "dhash": " ".join(f"{int(h):016x}" for h in fp.hashes),
                "grey_std": f"{fp.std:.2f}",
                "group": group,
                "excluded": reason,
            }
        )
    return rows


def summarize(rows: list[dict[str, str]]) -> dict[str, object]:
    members = Counter(r["group"] for r in rows if not r["excluded"])
    multi = {g: n for g, n in members.items() if n > 1}
    by_ds: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if not r["excluded"]:
            by_ds[r["dataset"]]["images"] += 1
            if members[r["group"]] > 1:
                by_ds[r["dataset"]]["in_multi_groups"] += 1
    mixed = sum(1 for g in multi if len({r["label"] for r in rows if r["group"] == g and not r["excluded"]}) > 1)
    return {
        "images": len(rows),
        "excluded": dict(Counter(r["excluded"] for r in rows if r["excluded"])),
        "dup_bits": {**DUP_BITS, "other datasets": DEFAULT_DUP_BITS},
        "blank_grey_std": BLANK_STD,
        "groups": len(members),
        "groups_with_copies": len(multi),
        "largest_group": max(multi.values(), default=1),
        "groups_mixing_labels": mixed,
        "per_dataset": {k: dict(v) for k, v in sorted(by_ds.items())},
    }


def write_audit(rows: list[dict[str, str]], out_dir: Path) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "audit.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows)
    (out_dir / "audit.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# Data audit",
        "",
        f"- images: {summary['images']}",
        f"- excluded: {summary['excluded']} (near-blank = grey std < {BLANK_STD} on a 64x64 thumbnail)",
        f"- near-duplicate rule: dHash 64 bit, 8 flips/rotations, distance <= {summary['dup_bits']} bits, union-find",
        f"- groups: {summary['groups']}, of which {summary['groups_with_copies']} hold copies "
        f"(largest {summary['largest_group']}); groups mixing labels: {summary['groups_mixing_labels']}",
        "",
        "| dataset | images kept | in groups with copies |",
        "|---|---|---|",
    ]
    for ds, c in summary["per_dataset"].items():  # type: ignore[union-attr]
        lines.append(f"| {ds} | {c.get('images', 0)} | {c.get('in_multi_groups', 0)} |")
    (out_dir / "audit.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=Path("reports/data"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    rows = audit(read_items(args.data), workers=args.workers)
    print(json.dumps(write_audit(rows, args.out), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
