"""`deepfake-api serve` as a real subprocess (uvicorn on a socket), for tests that need real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


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
