"""Describe the machine, print the table, the ratios and the PASS/FAIL bars, and write REPORT.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

REPORT = Path(__file__).with_name("REPORT.md")
BUSY_OTHER_CORES = 0.25  # other processes using more than this during a run distort it


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
    except OSError:
        wrk = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "ram_gib": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "kernel": platform.release(),
        "wrk": wrk,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _f(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


HEADER = [
    "target",
    "c",
    "ok/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "non-2xx",
    "socket err",
    "mean batch",
    "CPU ms/img",
    "server cores",
    "other cores",
]


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(results: dict[str, Any]) -> list[str]:
    """Markdown table rows (also readable as plain text)."""
    rows = [_row(HEADER), _row(["---"] + ["---:"] * (len(HEADER) - 1))]
    dash = "—"
    bracket = [(results["inprocess"], "before HTTP")]
    if "inprocess_after" in results:
        bracket.append((results["inprocess_after"], "after HTTP"))
    for ip, when in bracket:
        s, pipe = ip["single"], ip["pipeline"]
        name = f"in-process pipeline (batch {ip['batch']}, {when})"
        rate, cpu_ms = _f(pipe["images_per_s"]), _f(pipe["cpu_ms_per_image"], 2)
        rows.append(_row([name, dash, rate, *[dash] * 5, ip["batch"], cpu_ms, dash, dash]))
        single = [_f(1000 / s["p50_ms"]), _f(s["p50_ms"], 2), _f(s["p90_ms"], 2), dash, dash, dash, 1]
        rows.append(
            _row([f"in-process single (batch 1, {when})", 1, *single, _f(s["cpu_ms_per_image"], 2), dash, dash])
        )
    for block in (results.get("service"), results.get("seed")):
        for lv in block["levels"] if block else []:
            latency = [_f(lv[k], 2) for k in ("p50_ms", "p90_ms", "p99_ms")]
            errors = [lv["non_2xx"], lv["socket_errors"], _f(lv.get("mean_batch"), 1)]
            cpu = [_f(lv["server_cpu_ms_per_ok"], 2), _f(lv["server_cpu"], 2), _f(lv["other_cpu"], 2)]
            rows.append(_row([block["label"], lv["concurrency"], _f(lv["ok_per_s"]), *latency, *errors, *cpu]))
    return rows


def _level(block: dict[str, Any] | None, c: int) -> dict[str, Any] | None:
    if not block:
        return None
    return next((lv for lv in block["levels"] if lv["concurrency"] == c), None)


def inprocess_means(results: dict[str, Any]) -> tuple[float, float]:
    """Pipeline images/s and single-image p50 ms: the mean of the measurements bracketing the service's."""
    runs = [results[k] for k in ("inprocess", "inprocess_after") if k in results]
    rate = sum(r["pipeline"]["images_per_s"] for r in runs) / len(runs)
    return rate, sum(r["single"]["p50_ms"] for r in runs) / len(runs)


def ratios_and_bars(results: dict[str, Any]) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    service, seed = results["service"], results.get("seed")
    ip_rate, ip_single = inprocess_means(results)
    s32, s8, s1, b8 = _level(service, 32), _level(service, 8), _level(service, 1), _level(seed, 8)
    ratios: dict[str, float | None] = {
        "inprocess_pipeline_images_per_s": ip_rate,
        "inprocess_single_p50_ms": ip_single,
        "service_over_inprocess_c32": s32["ok_per_s"] / ip_rate if s32 else None,
        "service_over_seed_c8": s8["ok_per_s"] / b8["ok_per_s"] if s8 and b8 and b8["ok_per_s"] > 0 else None,
        "p50_c1_minus_inprocess_single_ms": s1["p50_ms"] - ip_single if s1 else None,
        "service_non_2xx": sum(lv["non_2xx"] for lv in service["levels"]),
        "service_socket_errors": sum(lv["socket_errors"] for lv in service["levels"]),
        "ready_s": service["ready_s"],
        "rss_growth_pct": (service["rss_after"] / service["rss_before"] - 1) * 100,
    }
    if seed:
        ratios["seed_non_2xx"] = sum(lv["non_2xx"] for lv in seed["levels"])
        ratios["seed_socket_errors"] = sum(lv["socket_errors"] for lv in seed["levels"])
    r = ratios
    errors = (r["service_non_2xx"] or 0) + (r["service_socket_errors"] or 0)
    bars = [
        _bar("service ÷ in-process throughput at c=32", r["service_over_inprocess_c32"], ">=", 0.9, "{:.2f}"),
        _bar("service ÷ seed-style throughput at c=8", r["service_over_seed_c8"], ">=", 20, "{:.1f}×"),
        _bar(
            "p50 at c=1 − in-process single latency",
            r["p50_c1_minus_inprocess_single_ms"],
            "<=",
            1.5,
            "{:+.2f} ms",
        ),
        _bar("service errors (non-2xx + socket)", errors, "==", 0, "{:.0f}"),
        _bar("start to ready (/health/ready 200)", r["ready_s"], "<=", 5.0, "{:.2f} s"),
        _bar("RSS growth over the HTTP run", r["rss_growth_pct"], "<", 5.0, "{:+.1f} %"),
    ]
    return ratios, bars


def _bar(name: str, value: float | None, op: str, target: float, fmt: str) -> dict[str, Any]:
    if value is None:
        return {"name": name, "value": None, "target": f"{op} {target:g}", "status": "SKIP", "shown": "n/a"}
    ok = {">=": value >= target, "<=": value <= target, "<": value < target, "==": value == target}[op]
    return {
        "name": name,
        "value": value,
        "target": f"{op} {target:g}",
        "status": "PASS" if ok else "FAIL",
        "shown": fmt.format(value),
    }


def bar_lines(bars: list[dict[str, Any]]) -> list[str]:
    return [f"{b['status']}  {b['name']}: {b['shown']} (bar {b['target']})" for b in bars]


def distortion_warning(results: dict[str, Any]) -> str | None:
    levels = [lv for name in ("service", "seed") if results.get(name) for lv in results[name]["levels"]]
    worst = max((lv["other_cpu"] for lv in levels), default=0.0)
    short = [
        f"{results[name]['label']} c={lv['concurrency']}"
        for name in ("service", "seed")
        if results.get(name)
        for lv in results[name]["levels"]
        if lv["requests"] < 2 * lv["concurrency"]
    ]
    if short:
        return (
            f"WARNING: some levels ({', '.join(short)}) answered fewer than two requests per "
            "connection: requests still in flight when a level ends count neither as answered nor as "
            "errors, so those levels measured nothing; raise --duration or use an idle machine."
            + (f" Other processes used up to {worst:.2f} cores." if worst > BUSY_OTHER_CORES else "")
        )
    if worst > BUSY_OTHER_CORES:
        return (
            f"WARNING: other processes used up to {worst:.2f} cores during the HTTP runs (load average "
            f"at start {' '.join(results['machine']['loadavg_start'])}): these numbers are distorted; "
            "re-run on an idle machine."
        )
    return None


def markdown(results: dict[str, Any], bars: list[dict[str, Any]], ratios: dict[str, float | None]) -> str:
    m, ip, svc = results["machine"], results["inprocess"], results["service"]
    v = ip["versions"]
    lines = [
        f"Run `{results['command']}` at {results['timestamp']} (results/{results['file']}).",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
        f"Python {v['python']}, backend {ip.get('backend', 'tensorflow')} "
        f"(ai-edge-litert {v.get('ai-edge-litert', '-')}), numpy {v['numpy']}, {m['wrk']}. "
        f"Load average at start: {' '.join(m['loadavg_start'])}.",
        "",
        f"Images: {results['images']}. Model: `{Path(ip['model']).name}` sha256 {ip['model_sha256'][:12]}…. "
        f"Service settings: {results['service_settings'] or 'defaults'}; {svc['duration_s']:g} s per level "
        f"after {results['warmup_s']:g} s of warm-up at the highest concurrency.",
        "",
    ]
    warning = distortion_warning(results)
    if warning:
        lines += [f"**{warning}**", ""]
    lines += table(results)
    lines += [
        "",
        f"In-process diagnostics: decode alone {_f(ip['decode_only_images_per_s'])} images/s on "
        f"{ip['decode_threads']} threads; model alone {_f(ip['model_only_images_per_s'])} images/s at batch "
        f"{ip['batch']}; load + warm {_f(ip['load_and_warm_s'], 2)} s. The ratios use the mean of the "
        f"in-process runs before and after the HTTP levels: {_f(ratios['inprocess_pipeline_images_per_s'])} "
        f"images/s, single p50 {_f(ratios['inprocess_single_p50_ms'], 2)} ms.",
        f"Service: ready in {_f(svc['ready_s'], 2)} s; RSS {svc['rss_ready'] / 2**20:.0f} MiB at ready, "
        f"{svc['rss_before'] / 2**20:.0f} MiB after warm-up, "
        f"{svc['rss_after'] / 2**20:.0f} MiB after the run.",
        "",
        "| bar | value | target | result |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {b['name']} | {b['shown']} | {b['target']} | {b['status']} |" for b in bars]
    if results.get("seed"):
        lines += [
            "",
            f"Seed-style errors: {ratios.get('seed_non_2xx', 0)} non-2xx, "
            f"{ratios.get('seed_socket_errors', 0)} socket.",
        ]
    return "\n".join(lines)


def to_json(obj: Any) -> str:
    """JSON with null for NaN (a level that answered nothing has no latency), readable by any tool."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and x != x:
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=2) + "\n"


def update_section(key: str, body: str, path: Path = REPORT) -> None:
    """Replace the text between <!-- bench:KEY --> and <!-- /bench:KEY -->, keeping the rest of the file."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
