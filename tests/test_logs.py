"""logs.py: one JSON line per record for us and for libraries; a library that fails in a loop is
said once per REPEAT_S with the error in one line, never a traceback storm; the CLI stays quiet."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from deepfake_api.logs import configure_logging, flush_logs
from tests.conftest import MODEL_PATH, make_settings
from tests.utils.server import free_port

NATIVE = "INFO: Created TensorFlow Lite XNNPACK delegate"
"""LiteRT's C++ runtime writes this to the process's stderr itself, once, when the model loads."""


def test_a_library_failing_in_a_loop_is_logged_once_in_json_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(make_settings(log_json=True), libraries=True)
    try:
        for _ in range(200):
            try:
                raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
            except ConnectionError:
                logging.getLogger("huey.consumer").exception("Error reading from queue")
        for i in range(3):
            logging.getLogger("deepfake_api.jobs").warning("ours, every time", extra={"n": i})
    finally:
        flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    library = [r for r in lines if r["name"] == "huey.consumer"]
    assert len(library) == 1
    assert library[0]["error"] == "ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused."
    assert "exc_info" not in library[0] and "Traceback" not in json.dumps(library[0])
    assert [r["n"] for r in lines if r["name"] == "deepfake_api.jobs"] == [0, 1, 2]


def test_a_worker_without_redis_logs_json_lines_without_tracebacks_or_paths(tmp_path: Path) -> None:
    """Issue 27 defect 13: 9 081 lines of plain-text tracebacks with full paths in 20 s."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_")},
        "DEEPFAKE_MODEL_PATH": str(MODEL_PATH),
        "DEEPFAKE_JOBS_DIR": str(tmp_path),
        "DEEPFAKE_JOBS_BACKEND": "redis",
        "DEEPFAKE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
        "DEEPFAKE_JOBS_LEASE_S": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from deepfake_api.cli import main; raise SystemExit(main(['worker']))"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while b"worker ready" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(5)  # the consumers and the reaper keep failing to reach Redis meanwhile
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(NATIVE)]
    records = [json.loads(line) for line in lines]  # every line Python writes is JSON
    assert "Traceback" not in text and "/site-packages/" not in text and str(Path.home()) not in text
    assert any("Connection refused" in r.get("error", "") for r in records), text[-3000:]
    repeats = Counter((r["name"], r["message"]) for r in records if r["levelname"] in ("WARNING", "ERROR"))
    assert max(repeats.values()) <= 2, repeats  # once per REPEAT_S (10 s) for the same message
