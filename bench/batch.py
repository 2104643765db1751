"""Batch vs single: images/s of one POST /predict/batch of N files against N POST /predict calls.

    .venv/bin/python -m bench.batch [--files 16] [--repeat 3]

Starts `deepfake-api serve` on a free port, then alternates (so machine noise hits both alike):
N single calls one after another (what a loop over /predict does), N single calls 8 at a time,
and one batch of the same N files. Prints images/s of each and the ratios batch / sequential and
batch / concurrent measured in this run. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from tests.utils.faces import face_jpeg

from bench import servers


async def sequential(client: httpx.AsyncClient, images: list[bytes]) -> float:
    started = time.perf_counter()
    for i, data in enumerate(images):
        r = await client.post("/predict", files={"file": (f"{i}.jpg", data)})
        assert r.status_code == 200, r.text
    return len(images) / (time.perf_counter() - started)


async def concurrent(client: httpx.AsyncClient, images: list[bytes], c: int = 8) -> float:
    gate = asyncio.Semaphore(c)

    async def one(i: int, data: bytes) -> None:
        async with gate:
            r = await client.post("/predict", files={"file": (f"{i}.jpg", data)})
            assert r.status_code == 200, r.text

    started = time.perf_counter()
    await asyncio.gather(*(one(i, d) for i, d in enumerate(images)))
    return len(images) / (time.perf_counter() - started)


async def batch(client: httpx.AsyncClient, images: list[bytes]) -> float:
    started = time.perf_counter()
    r = await client.post("/predict/batch", files=[("file", (f"{i}.jpg", d)) for i, d in enumerate(images)])
    assert r.status_code == 200 and all(s["status"] == 200 for s in r.json()["results"]), r.text
    return len(images) / (time.perf_counter() - started)


async def run(url: str, files: int, repeat: int) -> dict[str, object]:
    images = [face_jpeg(i) for i in range(files)]
    rates: dict[str, list[float]] = {"sequential": [], "concurrent_8": [], "batch": []}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await batch(client, images[:2])  # warm
        for _ in range(repeat):
            rates["sequential"].append(await sequential(client, images))
            rates["concurrent_8"].append(await concurrent(client, images))
            rates["batch"].append(await batch(client, images))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "files": files,
        "repeat": repeat,
        "images_per_s": {k: round(v, 2) for k, v in med.items()},
        "batch_over_sequential": round(med["batch"] / med["sequential"], 2),
        "batch_over_concurrent_8": round(med["batch"] / med["concurrent_8"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    port = servers.free_port()
    server = servers.Server(
        "deepfake-api",
        [str(servers.ROOT / ".venv/bin/deepfake-api"), "serve", "--port", str(port)],
        port,
        "/health/ready",
        Path("/tmp/bench-batch-server.log"),
    )
    server.start()
    try:
        result = asyncio.run(run(f"http://127.0.0.1:{port}", args.files, args.repeat))
    finally:
        server.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
