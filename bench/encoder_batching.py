"""Cost of encoding face crops one graph run per crop (served since the int8 graph's per-tensor
activation scale made a face's features depend on its batch-mates) against one run per batch of 8,
measured in one run, interleaved round by round on the same crops.

    python -m bench.encoder_batching [--rounds 6] [--faces 32]

Prints ms per face for each way and the ratio per-crop / batched.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tests.utils.images import smooth_images

from deepfake_api import assets
from deepfake_api.detectors.encoder import INPUT, ClipEncoder, to_pixels

LAYERS = (3, 5, 7, 9, 11)  # what the served head reads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--faces", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    enc = ClipEncoder(assets.path("clip"), layers=LAYERS, sha256=assets.ASSETS["clip"].sha256, threads=args.threads)
    crops = smooth_images(args.faces)

    def batched() -> None:  # the way before: one run per batch of 8
        for i in range(0, len(crops), 8):
            enc._session.run(enc._outputs, {INPUT: to_pixels(crops[i : i + 8])})

    def per_crop() -> None:
        enc.features(crops)

    per_crop()
    batched()
    times: dict[str, list[float]] = {"batched": [], "per_crop": []}
    for _ in range(args.rounds):
        for name, fn in (("batched", batched), ("per_crop", per_crop)):
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000 / len(crops))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:9s} ms/face min {min(v):.1f} median {med[k]:.1f} max {max(v):.1f}")
    print(f"ratio per-crop / batched (median): {med['per_crop'] / med['batched']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
