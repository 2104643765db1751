"""`deepfake-api serve` as a real subprocess (uvicorn on a socket), for tests that need real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The CLI with a clean environment (no DEEPFAKE_/PROMETHEUS_ variables from the caller) plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPFAKE_", "PROMETHEUS_"))}
    clean.update(env or {})
    cli = Path(sys.executable).with_name("deepfake-api")
    return subprocess.Popen(
        [str(cli), "serve", "--port", str(port), *args],
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(proc: subprocess.Popen[bytes], url: str, *, in_a_row: int = 1, timeout: float = 120.0) -> None:
    """Poll /health/ready until it answers 200 `in_a_row` times (with several workers each new
    connection may land on another one); fails if the process exits or the time runs out."""
    deadline, ready = time.monotonic() + timeout, 0
    while ready < in_a_row:
        assert proc.poll() is None and time.monotonic() < deadline, "the service did not become ready"
        try:
            ok = httpx.get(url + "/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        ready = ready + 1 if ok else 0
        time.sleep(0.05)
