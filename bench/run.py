"""One command, one machine: the in-process pipeline limit, the service over HTTP, the seed-style baseline.

    python -m bench.run [--duration 20] [--concurrency 1,8,32,64] [--set max_batch_size=32] [--workers 2]

Prints a table, the ratios and PASS/FAIL lines for the bars, writes bench/results/<timestamp>.json
and replaces the generated section of bench/REPORT.md. Needs `wrk` (apt-get install -y wrk) and
the `bench` extra (Flask, opencv-python-headless) for the seed-style baseline. Run it on an idle
machine: the table shows how many cores other processes used during each HTTP run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import images, loadgen, report, servers

RESULTS = Path(__file__).with_name("results")
MODEL = servers.ROOT / "models" / "model.tflite"


def settings_env(pairs: list[str], workers: int | None) -> dict[str, str]:
    """`--set name=value` pairs as the service's DEEPFAKE_* environment."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects name=value, got {pair!r}")
        env[f"DEEPFAKE_{name.strip().upper()}"] = value.strip()
    if workers:
        env["DEEPFAKE_WORKERS"] = str(workers)
    return env


def run_inprocess(list_file: Path, seconds: float, batch: int, env: dict[str, str], model: Path) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.inprocess",
        str(list_file),
        "--duration",
        str(seconds),
        "--batch",
        str(batch),
    ]
    # One process: the limit uses every core, however many workers the service runs.
    full_env = {**os.environ, "DEEPFAKE_MODEL_PATH": str(model), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    full_env["DEEPFAKE_WORKERS"] = "1"
    out = subprocess.run(argv, cwd=servers.ROOT, env=full_env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"in-process measurement failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def load_levels(
    server: servers.Server,
    path: str,
    list_file: Path,
    levels: list[int],
    seconds: float,
    warmup: float,
    field: str = "file",
) -> dict[str, Any]:
    """Warm up at the highest concurrency, then one wrk run per level; RSS around the measured runs."""
    rss_ready = servers.rss_bytes(server.pid)
    # The seed-style server builds Keras' predict function on its first request (seconds): take
    # that out of the measured levels, whatever the warm-up length.
    first = Path(list_file.read_text().split("\n", 1)[0])
    status = servers.post_image(server.port, path, first, field)
    if status != 200:
        print(f"  WARNING: the first request to {server.name} answered {status}", flush=True)
    if warmup > 0:
        warm = loadgen.run_wrk(server, path, list_file, max(levels), warmup, field)
        servers.settle(server, warm.max_ms)
    rss_before = servers.rss_bytes(server.pid)
    measured = []
    for c in levels:
        before = servers.scrape(server.port) if server.name == "service" else {}
        result = loadgen.run_wrk(server, path, list_file, c, seconds, field).as_dict()
        servers.settle(server, result["max_ms"])
        if server.name == "service":
            result.update(servers.batch_stats(before, servers.scrape(server.port)))
        measured.append(result)
        print(
            f"  {server.name:<10} c={c:<3} {result['ok_per_s']:8.1f} ok/s  p50 {result['p50_ms']:8.2f} ms  "
            f"p99 {result['p99_ms']:8.2f} ms  errors {result['non_2xx'] + result['socket_errors']}  "
            f"other cores {result['other_cpu']:.2f}",
            flush=True,
        )
    return {
        "ready_s": server.ready_s,
        "rss_ready": rss_ready,
        "rss_before": rss_before,
        "rss_after": servers.rss_bytes(server.pid),
        "duration_s": seconds,
        "levels": measured,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level (default 20)")
    ap.add_argument("--concurrency", default="1,8,32,64", help="comma-separated levels (default 1,8,32,64)")
    ap.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of unmeasured load before the levels (default 5)"
    )
    ap.add_argument("--inprocess-duration", type=float, help="seconds of pipeline throughput (default: --duration)")
    ap.add_argument("--batch", type=int, default=32, help="in-process batch size (default 32)")
    ap.add_argument("--images", type=int, default=96, help="size of the fixed image set (default 96)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting, e.g. max_batch_size=32",
    )
    ap.add_argument("--workers", type=int, help="uvicorn worker processes for the service")
    ap.add_argument(
        "--model", type=Path, default=MODEL, help="model file, .tflite or .keras (default: the committed model.tflite)"
    )
    ap.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for ready (default 180)")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed-style baseline")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite bench/REPORT.md")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers.stop_on_sigterm()
    levels = [int(c) for c in args.concurrency.split(",") if c]
    env = settings_env(args.set, args.workers)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    loadgen.wrk_path()
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": f"python -m bench.run {shlex.join(argv if argv is not None else sys.argv[1:])}".strip(),
        "machine": report.machine(),
        "service_settings": " ".join(f"{k}={v}" for k, v in env.items()),
        "warmup_s": args.warmup,
    }
    if float(results["machine"]["loadavg_start"][0]) > 0.5:
        load = results["machine"]["loadavg_start"][0]
        print(f"WARNING: load average {load} before the run: numbers will be distorted")
    with tempfile.TemporaryDirectory(prefix="deepfake-bench-") as tmp:
        scratch = Path(tmp)
        paths, results["images"] = images.image_set(args.images, scratch)
        list_file = scratch / "images.txt"
        list_file.write_text("".join(f"{p}\n" for p in paths))
        print(f"images: {results['images']}", flush=True)

        def inprocess(title: str) -> dict[str, Any]:
            print(f"{title} ...", flush=True)
            ip = run_inprocess(list_file, args.inprocess_duration or args.duration, args.batch, env, args.model)
            rate, single = ip["pipeline"]["images_per_s"], ip["single"]["p50_ms"]
            print(f"  {rate:.1f} images/s at batch {args.batch}; single p50 {single:.2f} ms", flush=True)
            return ip

        started = time.perf_counter()
        results["inprocess"] = inprocess("in-process pipeline")

        print("service over HTTP ...", flush=True)
        with servers.service(scratch, env, args.model) as svc:
            svc.start(args.ready_timeout)
            print(f"  ready in {svc.ready_s:.2f} s", flush=True)
            results["service"] = {
                "label": "service",
                **load_levels(svc, "/predict", list_file, levels, args.duration, args.warmup),
            }

        # Again after the HTTP levels: the machine drifts by 10-20 % within minutes, so the ratios
        # use the mean of the two in-process measurements that bracket the service's.
        results["inprocess_after"] = inprocess("in-process pipeline again")

        if not args.no_seed:
            print("seed-style baseline over HTTP ...", flush=True)
            # The seed's way needs the Keras network (model.predict): the one the runtime was exported from.
            with servers.seed_style(scratch, args.model.with_suffix(".keras")) as seed:
                seed.start(args.ready_timeout)
                results["seed"] = {
                    "label": "seed-style",
                    **load_levels(seed, "/upload", list_file, levels, args.duration, args.warmup),
                }
        results["wall_s"] = time.perf_counter() - started

    ratios, bars = report.ratios_and_bars(results)
    results["ratios"], results["bars"] = ratios, bars
    RESULTS.mkdir(exist_ok=True)
    results["file"] = f"{stamp}.json"
    (RESULTS / results["file"]).write_text(report.to_json(results))

    print()
    print("\n".join(report.table(results)))
    print()
    print(f"service ÷ in-process at c=32: {_show(ratios['service_over_inprocess_c32'], '{:.2f}')}")
    print(f"service ÷ seed-style at c=8:  {_show(ratios['service_over_seed_c8'], '{:.1f}×')}")
    print(f"p50 at c=1 − in-process single: {_show(ratios['p50_c1_minus_inprocess_single_ms'], '{:+.2f} ms')}")
    print(
        f"errors: service {ratios['service_non_2xx']} non-2xx, {ratios['service_socket_errors']} socket",
        end="",
    )
    print(
        f"; seed-style {ratios['seed_non_2xx']} non-2xx, {ratios['seed_socket_errors']} socket"
        if "seed_non_2xx" in ratios
        else ""
    )
    print()
    print("\n".join(report.bar_lines(bars)))
    warning = report.distortion_warning(results)
    if warning:
        print(warning)
    if not args.no_report:
        report.update_section("run", report.markdown(results, bars, ratios))
    print(f"\nwrote {RESULTS / results['file']}" + ("" if args.no_report else f" and {report.REPORT}"))
    return 0


def _show(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


if __name__ == "__main__":
    sys.exit(main())
