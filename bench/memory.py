"""Memory under big uploads and big headers: does the service (or the proxy in front of it) hold?

    .venv/bin/python -m bench.memory                       # starts `deepfake-api serve` itself
    .venv/bin/python -m bench.memory --url http://127.0.0.1:8000 --pid-file F   # a running service
    .venv/bin/python -m bench.memory --url http://127.0.0.1:8000 --no-headers   # through a proxy

Uploads: `--concurrency` (128) clients each POST one `--size` (9.5 MB) image at once, `--rounds`
times. Every answer must be 200 or 503 (the body budget's refusal); it prints the status counts,
connection errors, and the server's RSS before and at its peak (VmHWM, from /proc) against the
budget it reports. Headers: 16 connections each send 32 MiB of unfinished headers, and 16 send
their headers one byte a second; it prints what they got, how long they were held and the RSS
they added. Exit 1 when an upload got anything but 200/503 or a connection error, or a header
client was held past --header-hold (a check for CI's container stage, not a timing test).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from bench import servers

MIB = 1024 * 1024


def big_jpeg(size: int, seed: int = 0) -> bytes:
    """A real JPEG of about `size` bytes: a noise photo, so the service decodes it in full."""
    rng = np.random.default_rng(seed)
    side = 1200
    while True:
        pixels = rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=92)
        if buf.tell() >= size * 0.95:
            return buf.getvalue()
        side = int(side * (size / buf.tell()) ** 0.5 * 1.02) + 8


def peak_rss(pid: int) -> tuple[float, float]:
    """(current, peak) resident MB of a process: VmRSS and VmHWM."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> None:
    """Start VmHWM from now (Linux: writing 5 to clear_refs resets the peak RSS)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


async def uploads(url: str, image: bytes, concurrency: int, rounds: int) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one(i: int) -> None:
            started = time.perf_counter()
            try:
                r = await client.post("/predict", files={"file": (f"big-{i}.jpg", image, "image/jpeg")})
            except httpx.HTTPError as exc:
                statuses[f"connection error ({type(exc).__name__})"] += 1
                return
            latencies.append(time.perf_counter() - started)
            statuses[str(r.status_code)] += 1
            if r.status_code != 200:
                problems[r.json().get("type", "?").rsplit("/", 1)[-1] if r.content else "?"] += 1

        for _ in range(rounds):
            await asyncio.gather(*(one(i) for i in range(concurrency)))
    latencies.sort()
    return {
        "statuses": dict(statuses),
        "problem_types": dict(problems),
        "p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
    }


def _held(addr: tuple[str, int], send: bytes | None, trickle: bytes | None, limit_s: float) -> tuple[str, float]:
    """One header client: (first response line or how it ended, seconds until the server let go)."""
    started = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=limit_s + 5) as s:
            try:
                if send is not None:
                    s.sendall(send)
                if trickle is not None:
                    for byte in trickle:
                        s.sendall(bytes([byte]))
                        time.sleep(1.0)
                        if time.monotonic() - started > limit_s + 5:
                            break
            except OSError:
                pass  # the server closed while we sent: it let go
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except OSError:
                pass
    except OSError as exc:
        return f"connect failed ({type(exc).__name__})", time.monotonic() - started
    first = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed, no answer"
    return first, time.monotonic() - started


async def headers(url: str, n: int, limit_s: float) -> dict[str, object]:
    parts = urlsplit(url)
    addr = (parts.hostname or "127.0.0.1", parts.port or 80)
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 * MIB)  # never finished
    slow = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"b" * 120
    out: dict[str, object] = {}
    for name, kwargs in (("32 MiB unfinished header", {"send": huge}), ("1 byte/s header", {"trickle": slow})):
        results = await asyncio.gather(
            *(asyncio.to_thread(_held, addr, kwargs.get("send"), kwargs.get("trickle"), limit_s) for _ in range(n))
        )
        out[name] = {
            "answers": dict(Counter(r for r, _ in results)),
            "held_max_s": round(max(t for _, t in results), 1),
        }
    return out


async def budget_of(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("deepfake_body_bytes_reserved"):
            return line
    return "deepfake_body_bytes_reserved: not exposed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running service or proxy (default: start one)")
    ap.add_argument("--pid", type=int, help="the running service's pid, for its RSS")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=float, default=9.5, help="upload size in MB")
    ap.add_argument("--header-clients", type=int, default=16)
    ap.add_argument("--header-hold", type=float, default=15.0, help="longest a header client may be held (s)")
    ap.add_argument("--no-headers", action="store_true", help="skip the header part")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the started service")
    args = ap.parse_args(argv)

    server = None
    url, pid = args.url, args.pid
    if url is None:
        port = servers.free_port()
        server = servers.Server(
            "deepfake-api",
            [str(servers.ROOT / ".venv/bin/deepfake-api"), "serve", "--port", str(port)],
            port,
            "/health/ready",
            Path("/tmp/bench-memory-server.log"),
            env=dict(e.split("=", 1) for e in args.env),
        )
        server.start()
        url, pid = f"http://127.0.0.1:{port}", server.pid
    try:
        image = big_jpeg(int(args.size * 1e6))
        result: dict[str, object] = {"url": url, "upload_bytes": len(image), "concurrency": args.concurrency}
        if pid:
            reset_peak(pid)
            result["rss_before_mb"] = round(peak_rss(pid)[0], 1)
        started = time.perf_counter()
        result["uploads"] = asyncio.run(uploads(url, image, args.concurrency, args.rounds))
        result["uploads_s"] = round(time.perf_counter() - started, 1)
        if pid:
            result["rss_peak_uploads_mb"] = round(peak_rss(pid)[1], 1)
        if not args.no_headers:
            if pid:
                reset_peak(pid)
            result["headers"] = asyncio.run(headers(url, args.header_clients, args.header_hold))
            if pid:
                result["rss_peak_headers_mb"] = round(peak_rss(pid)[1], 1)
        result["budget"] = asyncio.run(budget_of(url))
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    uploads_ok = all(k in ("200", "503") for k in result["uploads"]["statuses"])  # type: ignore[index]
    held_ok = all(
        v["held_max_s"] <= args.header_hold  # type: ignore[index]
        for v in result.get("headers", {}).values()  # type: ignore[attr-defined]
    )
    print(
        f"uploads only 200/503: {'PASS' if uploads_ok else 'FAIL'}; header clients let go: "
        f"{'PASS' if held_ok else 'FAIL'}"
    )
    return 0 if uploads_ok and held_ok else 1


if __name__ == "__main__":
    sys.exit(main())
