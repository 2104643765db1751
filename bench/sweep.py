"""Choose the worker/thread layout by measurement: the service under each layout, one at a time.

    python -m bench.sweep [--duration 10] [--concurrency 1,32] [--layout "name:key=value,key=value" ...]

Each layout changes one thing from the defaults (settings as in `--set` of bench.run; `workers`
is the number of uvicorn processes). For every layout the service is started afresh, warmed,
and loaded at each concurrency with wrk; the table shows throughput, latency, CPU per image,
the mean batch and why batches closed. Writes bench/results/sweep-<timestamp>.json and the
sweep section of bench/REPORT.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import images, loadgen, report, servers
from bench.run import MODEL, RESULTS, settings_env
from deepfake_api.config import available_cpus

CORES = available_cpus()
LAYOUTS = {
    "defaults": "",
    "decode_threads=1": "decode_threads=1",
    f"decode_threads={2 * CORES}": f"decode_threads={2 * CORES}",
    "inference_threads=1": "inference_threads=1",
    "max_batch_size=8": "max_batch_size=8",
    "max_batch_size=32": "max_batch_size=32",
    "max_batch_wait_ms=0": "max_batch_wait_ms=0",
    "max_batch_wait_ms=5": "max_batch_wait_ms=5",
    "workers=2": "workers=2",
    "log_level=WARNING": "log_level=WARNING",
}


def parse_layout(spec: str) -> tuple[str, list[str]]:
    name, _, pairs = spec.partition(":") if ":" in spec else (spec, "", spec)
    return name, [p for p in pairs.split(",") if p]


def measure_layout(
    name: str,
    pairs: list[str],
    list_file: Path,
    levels: list[int],
    seconds: float,
    warmup: float,
    scratch: Path,
    ready_timeout: float,
) -> dict[str, Any]:
    env = settings_env(pairs, None)
    with servers.service(scratch, env) as svc:
        try:
            svc.start(ready_timeout)
        except (RuntimeError, TimeoutError) as exc:  # record it and go on with the next layout
            log_tail = svc.log_path.read_text(errors="replace")[-1500:]
            print(f"{name:<22} FAILED: {exc}\n{log_tail}", flush=True)
            return {"layout": name, "settings": env, "error": str(exc), "log_tail": log_tail}
        if warmup > 0:
            warm = loadgen.run_wrk(svc, "/predict", list_file, max(levels), warmup)
            servers.settle(svc, warm.max_ms)
        rows = []
        for c in levels:
            before = servers.scrape(svc.port)
            row = loadgen.run_wrk(svc, "/predict", list_file, c, seconds).as_dict()
            servers.settle(svc, row["max_ms"])
            row.update(servers.batch_stats(before, servers.scrape(svc.port)))
            rows.append(row)
        rss = servers.rss_bytes(svc.pid)
    result = {"layout": name, "settings": env, "ready_s": svc.ready_s, "rss_mib": rss / 2**20, "levels": rows}
    print(_line(result), flush=True)
    return result


def _line(result: dict[str, Any]) -> str:
    parts = [f"{result['layout']:<22} ready {result['ready_s']:5.1f} s  RSS {result['rss_mib']:5.0f} MiB"]
    for lv in result["levels"]:
        parts.append(
            f"c={lv['concurrency']}: {lv['ok_per_s']:6.1f}/s p50 {lv['p50_ms']:7.2f} ms "
            f"cpu {lv['server_cpu_ms_per_ok']:5.1f} ms/img batch {lv['mean_batch']:4.1f}"
        )
    return "  ".join(parts)


def markdown(results: dict[str, Any]) -> str:
    levels = results["concurrency"]
    head = ["layout", "ready s", "RSS MiB"]
    for c in levels:
        head += [f"c={c} ok/s", f"c={c} p50 ms", f"c={c} p99 ms", f"c={c} CPU ms/img", f"c={c} mean batch"]
    head += ["errors", "closed full/idle/wait (last c)", "other cores (max)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["layouts"]:
        if "error" in r:
            rows.append("| " + " | ".join([r["layout"], f"failed: {r['error']}"] + [""] * (len(head) - 2)) + " |")
            continue
        cells = [r["layout"], f"{r['ready_s']:.1f}", f"{r['rss_mib']:.0f}"]
        for lv in r["levels"]:
            cells += [f"{lv['ok_per_s']:.1f}", f"{lv['p50_ms']:.2f}", f"{lv['p99_ms']:.2f}"]
            cells += [f"{lv['server_cpu_ms_per_ok']:.2f}", f"{lv['mean_batch']:.1f}"]
        last = r["levels"][-1]
        cells.append(str(sum(lv["non_2xx"] + lv["socket_errors"] for lv in r["levels"])))
        cells.append(f"{last['closed_full']:.0f}/{last['closed_idle']:.0f}/{last['closed_wait']:.0f}")
        cells.append(f"{max(lv['other_cpu'] for lv in r['levels']):.2f}")
        rows.append("| " + " | ".join(cells) + " |")
    ok = [r for r in results["layouts"] if "error" not in r]
    if ok:
        top = max(ok, key=lambda r: r["levels"][-1]["ok_per_s"])
        quick = min(ok, key=lambda r: r["levels"][0]["p50_ms"])
        rows += [
            "",
            f"Highest throughput at c={levels[-1]}: {top['layout']} ({top['levels'][-1]['ok_per_s']:.1f}/s); "
            f"lowest p50 at c={levels[0]}: {quick['layout']} ({quick['levels'][0]['p50_ms']:.2f} ms).",
        ]
    m = results["machine"]
    intro = [
        f"Sweep `{results['command']}` at {results['timestamp']} (results/{results['file']}): "
        f"{m['nproc']} cores, {m['cpu_model']}, load average at start {' '.join(m['loadavg_start'])}; "
        f"{results['duration_s']:g} s per level after {results['warmup_s']:g} s of warm-up; "
        f"{results['images']}.",
        "",
    ]
    return "\n".join(intro + rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per level (default 10)")
    ap.add_argument("--concurrency", default="1,32", help="levels (default 1,32)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first (default 3)")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--layout", action="append", default=[], help='"name:key=value,..." (default: the built-in list)')
    ap.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for ready (default 180)")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite bench/REPORT.md")
    args = ap.parse_args(argv)
    servers.stop_on_sigterm()
    levels = [int(c) for c in args.concurrency.split(",") if c]
    layouts = [parse_layout(s) for s in args.layout] or [
        (n, [p for p in v.split(",") if p]) for n, v in LAYOUTS.items()
    ]
    loadgen.wrk_path()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": f"python -m bench.sweep {' '.join(argv if argv is not None else sys.argv[1:])}".strip(),
        "machine": report.machine(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "concurrency": levels,
        "model": str(MODEL),
        "layouts": [],
    }
    with tempfile.TemporaryDirectory(prefix="deepfake-sweep-") as tmp:
        scratch = Path(tmp)
        paths, results["images"] = images.image_set(args.images, scratch)
        list_file = scratch / "images.txt"
        list_file.write_text("".join(f"{p}\n" for p in paths))
        for name, pairs in layouts:
            results["layouts"].append(
                measure_layout(name, pairs, list_file, levels, args.duration, args.warmup, scratch, args.ready_timeout)
            )
            text = _save(results, not args.no_report)  # after every layout: a cut-short sweep keeps its rows
    print("\n" + text)
    print(f"\nwrote {RESULTS / results['file']}" + ("" if args.no_report else f" and {report.REPORT}"))
    return 0


def _save(results: dict[str, Any], update_report: bool) -> str:
    RESULTS.mkdir(exist_ok=True)
    results["file"] = f"sweep-{results['timestamp']}.json"
    (RESULTS / results["file"]).write_text(report.to_json(results))
    text = markdown(results)
    if update_report:
        report.update_section("sweep", text)
    return text


if __name__ == "__main__":
    sys.exit(main())
