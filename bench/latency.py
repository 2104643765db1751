"""Where the time of one request goes when the service is idle (the c=1 bar), in one run.

    python -m bench.latency [--requests 300] [--gap-ms 2]

Same images, same machine, one after the other (never at once):
- round trip: a keep-alive HTTP/1.1 client (`http.client`, far lighter than wrk's Lua) posts one
  multipart upload at a time, `--gap-ms` apart, and times send -> last byte;
- handler: the response's `processing_time_ms` (from /predict's first line to the response
  built: upload parsing, the engine's hand-offs, decode, model);
- in-process: `preprocess` + one model call at batch 1 in this process, back to back (what
  `bench.run` calls in-process single) and with the same gap between images.
Differences of medians: round trip - handler = HTTP outside the handler (uvicorn, middleware,
loopback, the client); handler - in-process with gaps = upload parsing + thread hand-offs;
in-process with gaps - back to back = what idling does to the next image (cold caches, a
sleeping CPU and thread pool). Prints one table; writes results/latency-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import images, inprocess, report, servers
from bench.run import RESULTS


def over_http(port: int, datas: list[bytes], requests: int, gap_s: float) -> dict[str, list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bodies = [servers.multipart_body(d, "i.jpg") for d in datas]
    rtt, handler = [], []
    for i in range(requests + 20):  # the first 20 warm the connection and the code paths
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body, servers.MULTIPART_HEADERS)
        resp = conn.getresponse()
        payload = resp.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {payload[:200]!r}")
        if i >= 20:
            rtt.append(elapsed)
            handler.append(json.loads(payload)["processing_time_ms"])
        time.sleep(gap_s)
    conn.close()
    return {"round_trip_ms": rtt, "handler_ms": handler}


def in_process(datas: list[bytes], requests: int, gap_s: float) -> dict[str, list[float]]:
    model, decode = inprocess.served_model((1,))
    out: dict[str, list[float]] = {}
    for name, gap in (("inprocess_back_to_back_ms", 0.0), ("inprocess_with_gaps_ms", gap_s)):
        times = []
        for i in range(requests + 20):  # the first 20 warm the code paths, as over HTTP
            elapsed = inprocess.score_one(model, decode, datas[i % len(datas)])
            if i >= 20:
                times.append(elapsed * 1000)
            if gap:
                time.sleep(gap)
        out[name] = times
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=2.0, help="idle time between requests (default 2)")
    ap.add_argument("--images", type=int, default=96)
    args = ap.parse_args(argv)
    servers.stop_on_sigterm()
    gap = args.gap_ms / 1000
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="deepfake-latency-") as tmp:
        paths, described = images.image_set(args.images, Path(tmp))
        datas = [p.read_bytes() for p in paths]
        samples = in_process(datas, args.requests, gap)
        with servers.service(Path(tmp), {}) as svc:
            svc.start()
            samples.update(over_http(svc.port, datas, args.requests, gap))
    med = {k: statistics.median(v) for k, v in samples.items()}
    parts = {
        "HTTP outside the handler (round trip - handler)": med["round_trip_ms"] - med["handler_ms"],
        "upload parsing + hand-offs (handler - in-process with gaps)": med["handler_ms"]
        - med["inprocess_with_gaps_ms"],
        "idling between images (in-process with gaps - back to back)": med["inprocess_with_gaps_ms"]
        - med["inprocess_back_to_back_ms"],
    }
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": "python -m bench.latency " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
        "images": described,
        "gap_ms": args.gap_ms,
        "medians_ms": med,
        "differences_ms": parts,
        "samples_ms": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"latency-{stamp}.json"
    out.write_text(report.to_json(results))
    print(f"images: {described}; {args.requests} requests, {args.gap_ms:g} ms apart")
    print("| measured | median ms |\n|---|---:|")
    for key, value in med.items():
        print(f"| {key.removesuffix('_ms').replace('_', ' ')} | {value:.2f} |")
    total = med["round_trip_ms"] - med["inprocess_back_to_back_ms"]
    print(f"| **round trip - in-process back to back (the c=1 bar's gap)** | **{total:+.2f}** |")
    for key, value in parts.items():
        print(f"| {key} | {value:+.2f} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
