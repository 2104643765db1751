"""The face-aware path, measured in one run: cost per stage in process, then throughput in process
(the engine without HTTP) and through HTTP (the real service), on 1-face and 3-face images.

    python -m bench.faces [--duration 30] [--concurrency 1,8,32]

Prints a table and the ratio service / in-process at each concurrency, and writes
bench/results/faces-<timestamp>.json. Needs ../shared/datasets (faces are real photos composed
onto canvases, see tests/utils/faces.py). Run it on an idle machine: the numbers are seconds of CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tests.utils.faces import compose, face_jpeg, jpeg

from bench import servers
from deepfake_api import faces
from deepfake_api.config import Settings
from deepfake_api.engine import InferenceEngine
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import decode_image

RESULTS = Path(__file__).with_name("results")


def workloads() -> dict[str, bytes]:
    three, _ = compose((2400, 1600), [(200, 200), (1100, 700), (1900, 1200)], tile_scale=1.2)
    return {"1 face (250 px)": face_jpeg(3), "3 faces (2400x1600)": jpeg(three)}


def _ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def stages(model: DeepfakeModel, data: bytes, repeat: int) -> dict[str, float]:
    """Median ms per stage for one image: decode, detect, align (per face), each detector (per face)."""
    assert model.finder is not None
    finder = model.finder
    rgb = decode_image(data).rgb
    found = finder.detect(rgb)
    crops = np.stack([faces.align_face(rgb, f) for f in found])
    out = {
        "decode_ms": _ms(lambda: decode_image(data), repeat),
        "detect_ms": _ms(lambda: finder.detect(rgb), repeat),
        "align_ms_per_face": _ms(lambda: [faces.align_face(rgb, f) for f in found], repeat) / len(found),
    }
    for d in model.detectors:
        out[f"{d.name}_ms_per_face"] = _ms(lambda d=d: d.logits(crops), max(3, repeat // 4)) / len(crops)
    out["faces"] = len(found)
    return out


async def _drive(call: Callable[[], Awaitable[int]], concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` loops calling `call` for `seconds`: ok/s, errors, p50/p99 latency."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status = await call()
            if status == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    lat = sorted(latencies) or [float("nan")]
    return {
        "ok_per_s": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


async def in_process(model: DeepfakeModel, settings: Settings, data: bytes, c: int, seconds: float) -> dict[str, float]:
    """The engine the service runs, called directly: the limit HTTP is measured against."""
    decode = partial(faces.analyse, finder=model.finder, max_faces=settings.max_faces)
    engine = InferenceEngine(
        model,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_batch_wait_ms,
        max_in_flight=max(settings.max_in_flight, c),
        decode_threads=settings.decode_threads,
        decode=decode,
    )
    await engine.start()

    async def call() -> int:
        await engine.predict(data)
        return 200

    try:
        return await _drive(call, c, seconds)
    finally:
        await engine.stop()


async def over_http(port: int, data: bytes, c: int, seconds: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as client:

        async def call() -> int:
            r = await client.post("/predict", files={"file": ("image.jpg", data, "image/jpeg")})
            return r.status_code

        return await _drive(call, c, seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    settings = Settings(log_json=False)
    model = DeepfakeModel(settings.model_path, threads=settings.inference_threads, assets_dir=settings.assets_dir)
    model.load()
    model.warm((1, settings.max_batch_size))
    result: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "workloads": {}}
    loads = workloads()
    for name, data in loads.items():
        result["workloads"][name] = {"stages": stages(model, data, args.repeat), "in_process": {}, "service": {}}
        for c in levels:
            result["workloads"][name]["in_process"][c] = asyncio.run(
                in_process(model, settings, data, c, args.duration)
            )
    del model  # the service gets the cores and the memory
    with tempfile.TemporaryDirectory() as tmp, servers.service(Path(tmp), {"DEEPFAKE_LOG_LEVEL": "WARNING"}) as server:
        result["service_ready_s"] = server.start()
        for name, data in loads.items():
            for c in levels:
                result["workloads"][name]["service"][c] = asyncio.run(over_http(server.port, data, c, args.duration))
        result["service_rss_mb"] = servers.rss_bytes(server.pid) / 2**20
    _print(result, levels)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"faces-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(f"written {out}\n")
    return 0


def _print(result: dict[str, Any], levels: list[int]) -> None:
    for name, w in result["workloads"].items():
        print(f"\n## {name}")
        print("stage costs (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in w["stages"].items()))
        print("| c | in-process img/s | service img/s | ratio | service p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|")
        for c in levels:
            ip, sv = w["in_process"][c], w["service"][c]
            ratio = sv["ok_per_s"] / ip["ok_per_s"] if ip["ok_per_s"] else float("nan")
            print(
                f"| {c} | {ip['ok_per_s']:.2f} | {sv['ok_per_s']:.2f} | {ratio:.2f} | {sv['p50_ms']:.0f} "
                f"| {sv['p99_ms']:.0f} | {sv['errors']} |"
            )
    print(f"\nservice ready in {result['service_ready_s']:.1f} s, RSS {result['service_rss_mb']:.0f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
