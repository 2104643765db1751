"""Drive a server with wrk (Debian package `wrk`) and read back its numbers and the CPU it used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.servers import Server, cpu_seconds

LUA = Path(__file__).with_name("post.lua")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    return path


def _busy_ticks() -> int:
    """Busy clock ticks of the whole machine (all cores, every process), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4]  # less idle and iowait


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    ok: int
    non_2xx: int
    socket_errors: int
    ok_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # cores the server used on average (1.0 = one core busy)
    wrk_cpu: float
    other_cpu: float  # cores used by everything else on the machine: should be ~0 for a clean run
    server_cpu_ms_per_ok: float  # CPU the server spent per answered image: less sensitive to a busy machine

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_wrk(
    server: Server, path: str, list_file: Path, concurrency: int, seconds: float, field: str = "file"
) -> LoadResult:
    """One closed-loop run: `concurrency` connections, each sending its next request on the last reply."""
    argv = [
        wrk_path(),
        "-t1",  # one wrk thread is far from saturating at these rates and leaves the cores to the server
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{server.port}{path}",
        "--",
        str(list_file),
        field,
    ]
    cpu0, busy0, wall0 = cpu_seconds(server.pid), _busy_ticks(), time.perf_counter()
    rusage0 = os.times()
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    rusage1 = os.times()
    cpu1, busy1, wall1 = cpu_seconds(server.pid), _busy_ticks(), time.perf_counter()
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    wall = wall1 - wall0
    machine = (busy1 - busy0) / os.sysconf("SC_CLK_TCK") / wall  # cores busy, whoever used them
    server_cpu = (cpu1 - cpu0) / wall
    wrk_cpu = (
        (rusage1.children_user - rusage0.children_user) + (rusage1.children_system - rusage0.children_system)
    ) / wall
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    ok = r["requests"] - r["status"]
    seconds_run = r["duration_us"] / 1e6
    if r["requests"] == 0:  # nothing came back within the run: no latency to report
        r.update({k: float("nan") for k in ("p50_us", "p90_us", "p99_us", "max_us")})
    return LoadResult(
        concurrency=concurrency,
        seconds=seconds_run,
        requests=r["requests"],
        ok=ok,
        non_2xx=r["status"],
        socket_errors=socket_errors,
        ok_per_s=ok / seconds_run,
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        other_cpu=max(0.0, machine - server_cpu - wrk_cpu),
        server_cpu_ms_per_ok=(cpu1 - cpu0) * 1000 / ok if ok else float("nan"),
    )
