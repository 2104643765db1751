"""Cost per face of two served models, measured in one run: the same aligned face crops through
`DeepfakeModel.predict_faces` of each, interleaved round by round so both see the same machine load.

    python -m bench.model_cost --before-rev f61a85f [--after models] [--rounds 10]

`--before-rev` extracts that commit's `models/` files (card, heads, CNN) with `git show` into a
temporary folder; `--before DIR` names a folder instead. Prints ms per face at batch 1 and 8 for
each model and the ratio after / before, and writes bench/results/model-cost-<timestamp>.json.
The third-party weights come from the assets folder (`make assets`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tests.utils.faces import face_jpeg

from deepfake_api import assets, faces
from deepfake_api.model import DeepfakeModel

RESULTS = Path(__file__).with_name("results")


def extract(rev: str, out: Path) -> Path:
    """The models/ folder of a commit (its tracked files) in `out`."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:models"], check=True, capture_output=True, text=True
    ).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "show", f"{rev}:models/{name}"], check=True, capture_output=True).stdout
        (out / name).write_bytes(blob)
    return out / "model_card.json"


def crops(n: int) -> np.ndarray:
    finder = faces.FaceFinder(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    found = []
    for i in range(n * 3):
        got = faces.analyse(face_jpeg(i), finder).faces
        if got:
            found.append(got[0].crop)
        if len(found) == n:
            break
    return np.stack(found)


def timed(model: DeepfakeModel, batch: np.ndarray) -> float:
    start = time.perf_counter()
    model.predict_faces(batch)
    return (time.perf_counter() - start) * 1000 / len(batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, default=None)
    p.add_argument("--before-rev", default=None)
    p.add_argument("--after", type=Path, default=Path("models/model_card.json"))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        before = args.before / "model_card.json" if args.before else extract(args.before_rev, Path(tmp))
        models = {
            "before": DeepfakeModel(before, threads=args.threads),
            "after": DeepfakeModel(args.after, threads=args.threads),
        }
        for m in models.values():
            m.load()
            m.warm((1, 8))
        x = crops(8)
        times: dict[str, dict[int, list[float]]] = {k: {1: [], 8: []} for k in models}
        for _ in range(args.rounds):
            for name, m in models.items():
                for b in (1, 8):
                    times[name][b].append(timed(m, x[:b]))
        result = {
            name: {
                "version": models[name].version,
                "detectors": [d["name"] for d in models[name].detector_info()],
                **{f"ms_per_face_batch{b}": statistics.median(v) for b, v in t.items()},
            }
            for name, t in times.items()
        }
    for b in (1, 8):
        key = f"ms_per_face_batch{b}"
        result[f"ratio_batch{b}"] = result["after"][key] / result["before"][key]
        print(
            f"batch {b}: before {result['before'][key]:.1f} ms/face ({result['before']['version']}), "
            f"after {result['after'][key]:.1f} ms/face ({result['after']['version']}), "
            f"ratio {result[f'ratio_batch{b}']:.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"model-cost-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
