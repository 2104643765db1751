"""The in-process pipeline limit: the same decode and model code as the service, without HTTP.

    python -m bench.inprocess LIST_FILE [--duration S] [--batch 32]   (prints one JSON object)

Throughput: every image decoded by `preprocess` in a thread pool with one thread per core (the
limit, whatever the service's decode_threads) while one thread makes batched model calls at
--batch, as the service's engine does. Single latency: decode + model at batch 1, one image at a time.
Settings come from the environment exactly as the service reads them (DEEPFAKE_*).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from importlib.metadata import version
from itertools import cycle
from pathlib import Path

import numpy as np

from deepfake_api.config import available_cpus, get_settings
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import DecodedImage, ModelInputs, preprocess

Decode = Callable[[bytes], tuple[DecodedImage, ModelInputs]]


def pipeline_rate(
    model: DeepfakeModel, decode: Decode, datas: list[bytes], threads: int, batch: int, seconds: float
) -> dict[str, float]:
    """Images/s with decoding in `threads` threads overlapped with batched model calls."""
    source = cycle(datas)
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        ahead: deque[Future[tuple[DecodedImage, ModelInputs]]] = deque()

        def top_up() -> None:
            while len(ahead) < 2 * batch:  # one batch decoding while the model scores the previous one
                ahead.append(pool.submit(decode, next(source)))

        def one_batch() -> int:
            top_up()
            inputs = [ahead.popleft().result()[1] for _ in range(batch)]
            top_up()
            model.predict_logits(np.stack([i.local for i in inputs]), np.stack([i.global_ for i in inputs]))
            return batch

        one_batch()  # warm the pool and the batch shape
        done, started, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            done += one_batch()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        for f in ahead:
            f.cancel()
    return {
        "images": done,
        "seconds": elapsed,
        "images_per_s": done / elapsed,
        "cpu_ms_per_image": cpu * 1000 / done,
    }


def decode_rate(decode: Decode, datas: list[bytes], threads: int, seconds: float) -> float:
    """Images/s of decoding alone in the pool (where the pipeline limit comes from)."""
    with ThreadPoolExecutor(threads) as pool:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            list(pool.map(decode, datas))
            done += len(datas)
        return done / (time.perf_counter() - started)


def model_rate(model: DeepfakeModel, decode: Decode, datas: list[bytes], batch: int, seconds: float) -> float:
    """Images/s of model calls alone at `batch`, on inputs decoded beforehand."""
    inputs = [decode(d)[1] for d in (datas * (batch // len(datas) + 1))[:batch]]
    local, global_ = np.stack([i.local for i in inputs]), np.stack([i.global_ for i in inputs])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict_logits(local, global_)
        done += batch
    return done / (time.perf_counter() - started)


def score_one(model: DeepfakeModel, decode: Decode, data: bytes) -> float:
    """Seconds to decode one image and score it alone (batch 1)."""
    t0 = time.perf_counter()
    _, inputs = decode(data)
    model.predict_logits(inputs.local[None], inputs.global_[None])
    return time.perf_counter() - t0


def single_latency(model: DeepfakeModel, decode: Decode, datas: list[bytes], seconds: float) -> dict[str, float]:
    """Decode + model at batch 1, one image at a time: every image at least once, twice if time allows."""
    times = []
    started, cpu = time.perf_counter(), time.process_time()
    for i, data in enumerate(datas * 2):
        if i >= len(datas) and time.perf_counter() - started > seconds:
            break
        times.append(score_one(model, decode, data))
    cpu_ms = (time.process_time() - cpu) * 1000 / len(times)
    ms = sorted(t * 1000 for t in times)
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "mean_ms": statistics.fmean(ms),
        "cpu_ms_per_image": cpu_ms,
    }


def served_model(warm: tuple[int, ...]) -> tuple[DeepfakeModel, Decode]:
    """The model and the decode function exactly as the service's settings make them, loaded and warm."""
    settings = get_settings()
    model = DeepfakeModel(settings.model_path, threads=settings.inference_threads)
    model.load()
    model.warm(warm)
    return model, partial(preprocess, max_pixels=settings.max_pixels, min_side=settings.min_side)


def measure(paths: list[Path], seconds: float, batch: int) -> dict[str, object]:
    settings = get_settings()
    datas = [p.read_bytes() for p in paths]
    started = time.perf_counter()
    model, decode = served_model((1, batch))
    load_s = time.perf_counter() - started
    diag_s = max(1.0, seconds / 4)

    return {
        "model": str(settings.model_path),
        "model_sha256": model.sha256,
        "decode_threads": available_cpus(),
        "inference_threads": settings.inference_threads,
        "batch": batch,
        "load_and_warm_s": load_s,
        "single": single_latency(model, decode, datas, diag_s),
        "pipeline": pipeline_rate(model, decode, datas, available_cpus(), batch, seconds),
        "decode_only_images_per_s": decode_rate(decode, datas, available_cpus(), diag_s),
        "model_only_images_per_s": model_rate(model, decode, datas, batch, diag_s),
        "backend": model.backend,
        "versions": {
            "python": sys.version.split()[0],
            **{d: version(d) for d in ("ai-edge-litert", "numpy", "pillow")},
        },
        "pid": os.getpid(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list_file", type=Path, help="one image path per line")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of pipeline throughput")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    paths = [Path(line) for line in args.list_file.read_text().split("\n") if line]
    print(json.dumps(measure(paths, args.duration, args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
