"""GET /metrics through the real app: what one /predict leaves behind in each collector.

Collectors are process-wide and other tests share them, so every check compares two scrapes.
"""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL_PATH
from tests.utils.faces import face_jpeg
from tests.utils.images import jpeg_bytes

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _get(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def _delta(before: Samples, after: Samples, metric: str, **labels: str) -> float:
    return _get(after, metric, **labels) - _get(before, metric, **labels)


def _post(client: TestClient, data: bytes) -> int:
    return client.post("/predict", files={"file": ("face.jpg", data, "image/jpeg")}).status_code


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    before = _scrape(client)
    assert _post(client, jpeg_bytes(seed=11)) == 200
    assert _post(client, b"not an image at all") == 415
    after = _scrape(client)
    requests = "deepfake_http_requests_total"
    assert _delta(before, after, requests, route="/predict", method="POST", status="200") == 1
    assert _delta(before, after, requests, route="/predict", method="POST", status="415") == 1
    assert _delta(before, after, requests, route="/metrics", method="GET", status="200") == 1
    assert _delta(before, after, "deepfake_rejected_total", reason="overloaded") == 0


def test_metrics_record_latency_batches_queue_and_model(client: TestClient) -> None:
    before = _scrape(client)
    assert _post(client, face_jpeg(4)) == 200  # a face: the model is called
    after = _scrape(client)

    latency = "deepfake_http_request_duration_seconds"
    assert _delta(before, after, f"{latency}_count", route="/predict") == 1
    assert 0 < _delta(before, after, f"{latency}_sum", route="/predict") < 60
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == f"{latency}_bucket" and dict(labels)["route"] == "/predict"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "cumulative buckets never decrease"
    assert buckets[-1] == (float("inf"), _get(after, f"{latency}_count", route="/predict"))

    # An idle service scores a lone request in a batch of one, closed because nothing else was decoding.
    assert _delta(before, after, "deepfake_inference_batch_size_count") == 1
    assert _delta(before, after, "deepfake_inference_batch_size_sum") == 1
    assert _delta(before, after, "deepfake_inference_batch_size_bucket", le="1.0") == 1
    assert _delta(before, after, "deepfake_inference_batches_total", closed_by="idle") == 1
    assert _delta(before, after, "deepfake_inference_seconds_count") == 1
    assert 0 < _delta(before, after, "deepfake_inference_seconds_sum") < 60
    labels = ("real", "fake", "uncertain")
    assert sum(_delta(before, after, "deepfake_predictions_total", label=x) for x in labels) == 1

    assert _get(after, "deepfake_inference_queue_depth") == 0
    assert _get(after, "deepfake_requests_in_flight") == 0

    card = json.loads(MODEL_PATH.with_name("model_card.json").read_text())
    sha256 = hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()
    info = _get(after, "deepfake_model_info", name=card["name"], version=card["version"], sha256=sha256)
    assert info == 1
