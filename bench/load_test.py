"""Bounded load test: the real service under uvicorn, 64 concurrent clients, good and hostile uploads.

    .venv/bin/python -m bench.load_test                  # ~150 s at concurrency 64
    .venv/bin/python -m bench.load_test --duration 60 --json bench/results/load_test.json

Starts `deepfake-api serve` on a free port as a subprocess, waits until it is ready, then
drives it with httpx.AsyncClient: mostly real-looking JPEGs, plus a text file (415), a
truncated JPEG (422), an 11 MB body (413) and a header-only PNG bomb (413). It prints the
request count, status counts, 5xx and connection errors, p50/p99 latency (overall and per
kind), the server's RSS before and after, and how long a bomb takes to be refused (idle and
under load). Not a test: the numbers depend on the machine and on whatever else it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from tests.utils.faces import face_jpeg

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / ".venv" / "bin" / "deepfake-api"
OVERSIZE = 11 * 1024 * 1024


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """69 bytes whose IHDR (correct CRC) claims width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size, dtype=np.float32)[None, :, None]
    arr = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def good_images(count: int) -> tuple[list[bytes], str]:
    try:
        return [face_jpeg(i) for i in range(max(2, count // 3))], f"{max(2, count // 3)} dataset face JPEGs"
    except Exception:  # no dataset beside the checkout
        pass
    sizes = (600, 250, 224)  # the dataset's three sources
    return [_jpeg(sizes[i % 3], i) for i in range(count)], f"{count} generated JPEGs (600/250/224 px)"


@dataclass
class Payloads:
    good: list[bytes]
    text: bytes = b"just some text, certainly not an image\n" * 20
    truncated: bytes = b""
    oversized: bytes = b""
    bomb: bytes = field(default_factory=bomb_png)

    def __post_init__(self) -> None:
        self.truncated = self.good[0][: len(self.good[0]) // 3]
        self.oversized = b"\xff\xd8\xff" + os.urandom(1024) * (OVERSIZE // 1024)

    def pick(self, rng: random.Random, bad_ratio: float) -> tuple[str, bytes]:
        if rng.random() >= bad_ratio:
            return "good", rng.choice(self.good)
        kind = rng.choice(["text", "truncated", "oversized", "bomb"])
        return kind, getattr(self, kind)


@dataclass
class Results:
    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, outcome: str, seconds: float) -> None:
        self.statuses[outcome] += 1
        self.by_kind[kind][outcome] += 1
        self.latency[kind].append(seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of a process from /proc (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DEEPFAKE_LOG_JSON": "true"}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(SERVE), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if (await client.get("/health/ready")).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the server did not become ready")


async def post(client: httpx.AsyncClient, kind: str, data: bytes, results: Results) -> None:
    ctype = "text/plain" if kind == "text" else "image/jpeg"
    started = time.perf_counter()
    try:
        r = await client.post("/predict", files={"file": (f"{kind}.bin", data, ctype)})
        outcome = str(r.status_code)
    except httpx.TransportError as exc:  # the server closing an oversized upload counts here
        outcome = f"conn:{type(exc).__name__}"
        results.errors[f"{kind}:{type(exc).__name__}"] += 1
    results.record(kind, outcome, time.perf_counter() - started)


async def time_bombs(client: httpx.AsyncClient, payloads: Payloads, n: int = 7) -> list[float]:
    """Sequential bomb uploads on an otherwise idle server: seconds until the 413 arrives."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = await client.post("/predict", files={"file": ("bomb.png", payloads.bomb, "image/png")})
        out.append(time.perf_counter() - started)
        assert r.status_code == 413, r.text
    return out


async def drive(client: httpx.AsyncClient, payloads: Payloads, args: argparse.Namespace) -> Results:
    results = Results()
    stop_at = time.perf_counter() + args.duration

    async def worker(i: int) -> None:
        rng = random.Random(args.seed * 1000 + i)
        while time.perf_counter() < stop_at:
            kind, data = payloads.pick(rng, args.bad_ratio)
            await post(client, kind, data, results)

    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(results: Results, rss: tuple[float, float], bombs_idle: list[float], meta: dict[str, object]) -> dict:
    every = [s for values in results.latency.values() for s in values]
    total = sum(results.statuses.values())
    fivexx = sum(n for s, n in results.statuses.items() if s.startswith("5"))
    summary = {
        **meta,
        "requests": total,
        "throughput_rps": round(total / float(str(meta["duration_s"])), 1),
        "statuses": dict(sorted(results.statuses.items())),
        "status_5xx": fivexx,
        "status_5xx_other_than_503": sum(n for s, n in results.statuses.items() if s.startswith("5") and s != "503"),
        "connection_errors": dict(results.errors),
        "latency_ms": {"p50": round(pct(every, 0.50), 1), "p99": round(pct(every, 0.99), 1)},
        "by_kind": {
            kind: {
                "count": len(results.latency[kind]),
                "statuses": dict(sorted(results.by_kind[kind].items())),
                "p50_ms": round(pct(results.latency[kind], 0.50), 1),
                "p99_ms": round(pct(results.latency[kind], 0.99), 1),
            }
            for kind in sorted(results.latency)
        },
        "rss_mb": {"start": round(rss[0], 1), "end": round(rss[1], 1)},
        "bomb_reject_ms_idle": {
            "min": round(min(bombs_idle) * 1000, 2),
            "median": round(statistics.median(bombs_idle) * 1000, 2),
        },
        "bomb_reject_ms_under_load": {
            "p50": round(pct(results.latency.get("bomb", []), 0.5), 1),
            "p99": round(pct(results.latency.get("bomb", []), 0.99), 1),
        },
    }
    lines = [
        f"load test: {meta['duration_s']} s at concurrency {meta['concurrency']}, {meta['images']}",
        f"requests            {total}  ({summary['throughput_rps']} req/s)",
        f"statuses            {summary['statuses']}",
        f"5xx                 {fivexx}  (other than 503: {summary['status_5xx_other_than_503']})",
        f"connection errors   {sum(results.errors.values())}  {dict(results.errors)}",
        f"latency all         p50 {summary['latency_ms']['p50']} ms  p99 {summary['latency_ms']['p99']} ms",
    ]
    for kind, k in summary["by_kind"].items():
        lines.append(f"  {kind:<10} n={k['count']:<6} p50 {k['p50_ms']} ms  p99 {k['p99_ms']} ms  {k['statuses']}")
    lines += [
        f"server RSS          start {rss[0]:.1f} MB  end {rss[1]:.1f} MB",
        f"bomb refused (idle) min {summary['bomb_reject_ms_idle']['min']} ms  "
        f"median {summary['bomb_reject_ms_idle']['median']} ms",
        f"bomb refused (load) p50 {summary['bomb_reject_ms_under_load']['p50']} ms  "
        f"p99 {summary['bomb_reject_ms_under_load']['p99']} ms",
    ]
    print("\n".join(lines))
    return summary


async def run(args: argparse.Namespace) -> dict:
    good, described = good_images(args.images)
    payloads = Payloads(good)
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="deepfake-load-"))
    proc = start_server(port, scratch / "server.log")
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=args.timeout, limits=limits
        ) as client:
            ready_s = await wait_ready(client, proc, args.ready_timeout)
            bombs_idle = await time_bombs(client, payloads)
            rss_start = rss_mb(proc.pid)
            results = await drive(client, payloads, args)
            rss_end = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    meta = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "bad_ratio": args.bad_ratio,
        "images": described,
        "server_ready_s": round(ready_s, 1),
        "server_log": str(scratch / "server.log"),
    }
    return report(results, (rss_start, rss_end), bombs_idle, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=150.0, help="seconds of load (default 150)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bad-ratio", type=float, default=0.2, help="share of hostile uploads (default 0.2)")
    ap.add_argument("--images", type=int, default=24, help="good images in the rotation")
    ap.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args(argv)
    summary = asyncio.run(run(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["status_5xx_other_than_503"] else 0


if __name__ == "__main__":
    sys.exit(main())
