"""Start a server under test as a subprocess, time it to ready, read its RSS and CPU, stop it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `with Server(...)` blocks still stop what they started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


BOUNDARY = "deepfake-bench-first"
MULTIPART_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart_body(data: bytes, filename: str, field: str = "file") -> bytes:
    """One JPEG file part in a multipart/form-data body (send with MULTIPART_HEADERS)."""
    disposition = f'form-data; name="{field}"; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/jpeg\r\n\r\n"
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_image(port: int, path: str, image: Path, field: str = "file", timeout: float = 300.0) -> int:
    """One multipart upload, waiting as long as it takes: the first request builds lazy state."""
    body = multipart_body(image.read_bytes(), f"first_{image.name}", field)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, MULTIPART_HEADERS)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn workers are children of the supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLOCK_TICKS


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float = float("nan")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> float:
        """Launch and poll `ready_path`; returns seconds from launch to the first 200.

        Every 50 ms: finer polling would itself slow a loading service (each poll is a request
        and a log line) for a resolution the 5 s bar does not need.
        """
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if http_get(self.port, self.ready_path, timeout=1.0)[0] == 200:
                    self.ready_s = time.perf_counter() - started
                    return self.ready_s
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (uvicorn drains and stops its workers), SIGKILL if it lingers; only our own process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service(log_dir: Path, env: dict[str, str], model: Path | None = None) -> Server:
    """The real service: `deepfake-api serve` on a free port, settings from DEEPFAKE_* in `env`."""
    port = free_port()
    argv = [str(VENV_BIN / "deepfake-api"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if model is not None:
        argv += ["--model", str(model)]
    env = {"DEEPFAKE_LOG_JSON": "true", **env}
    return Server("service", argv, port, "/health/ready", log_dir / "service.log", env)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The service's /metrics as {(sample name, sorted labels): value}; empty when it cannot answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        status, body = http_get(port, "/metrics", timeout=30.0)
    except OSError:  # a starved or overloaded service: the caller treats "no numbers" as unknown
        return {}
    if status != 200:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def batch_stats(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[str, float]:
    """Mean batch size and why batches closed, between two scrapes (one worker's view)."""

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = delta("deepfake_inference_batch_size_count") if before and after else 0.0
    stats = {
        "batches": batches,
        "mean_batch": delta("deepfake_inference_batch_size_sum") / batches if batches else float("nan"),
    }
    for reason in ("full", "idle", "wait"):
        stats[f"closed_{reason}"] = delta("deepfake_inference_batches_total", closed_by=reason)
    return stats


def settle(server: Server, longest_ms: float, timeout: float = 60.0) -> None:
    """Wait until requests wrk abandoned at the end of a run are finished, so they do not count in the next.

    The service reports its in-flight requests (every worker must say 0 a few times in a row); the
    seed-style baseline cannot tell, so wait as long as its slowest request took.
    """
    if server.name != "service":
        time.sleep(min(timeout, longest_ms / 1000 + 0.5))
        return
    deadline, quiet = time.perf_counter() + timeout, 0
    while quiet < 5 and time.perf_counter() < deadline:
        in_flight = scrape(server.port).get(("deepfake_requests_in_flight", ()))
        quiet = quiet + 1 if in_flight == 0 else 0
        time.sleep(0.05)
