"""With several uvicorn workers, /metrics counts every worker's requests, whichever answers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.images import jpeg_bytes
from tests.utils.server import free_port, serve, wait_ready

WORKERS = 2


def _serve(port: int, tmpdir: Path) -> subprocess.Popen[bytes]:
    """`deepfake-api serve --workers 2`; its TMPDIR is where serve makes the metrics directory."""
    return serve(port, "--workers", str(WORKERS), env={"TMPDIR": str(tmpdir)})


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`deepfake-api serve --workers 2` as a subprocess, every worker ready: its URL and scratch dir."""
    port = free_port()
    scratch = tmp_path_factory.mktemp("workers")
    proc = _serve(port, scratch)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, in_a_row=10)  # new connections land on either worker: both must be ready
        yield url, scratch
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _predict_200s(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "deepfake_http_requests_total"
        and s.labels == {"route": "/predict", "method": "POST", "status": "200"}
    )


def test_every_scrape_counts_the_requests_of_all_workers(two_workers: tuple[str, Path]) -> None:
    url, scratch = two_workers
    image = jpeg_bytes(120, 120, seed=4)
    for i in range(12):  # a new connection each time: the kernel spreads them over the workers
        r = httpx.post(url + "/predict", files={"file": (f"{i}.jpg", image, "image/jpeg")}, timeout=30)
        assert r.status_code == 200, r.text
    scrapes = [httpx.get(url + "/metrics", timeout=10).text for _ in range(8)]
    assert [_predict_200s(text) for text in scrapes] == [12.0] * 8
    info = [
        s
        for family in text_string_to_metric_families(scrapes[0])
        for s in family.samples
        if s.name == "deepfake_model_info"
    ]
    assert len(info) == 1 and info[0].value == 1 and info[0].labels["sha256"]
    assert list(scratch.glob("deepfake-metrics-*/*.db")), "the workers share one metrics directory"


def test_the_metrics_directory_is_removed_after_a_clean_stop(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(port, tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("deepfake-metrics-*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    assert not list(tmp_path.glob("deepfake-metrics-*"))
