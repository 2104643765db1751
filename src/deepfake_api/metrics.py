"""Prometheus collectors, defined once for the process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

REQUESTS = Counter("deepfake_http_requests_total", "HTTP requests", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "deepfake_http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
INFERENCE_SECONDS = Histogram(
    "deepfake_inference_seconds",
    "Model call latency per batch",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
)
BATCH_SIZE = Histogram("deepfake_inference_batch_size", "Images per model call", buckets=(1, 2, 4, 8, 16, 32, 64))
BATCHES = Counter(
    "deepfake_inference_batches_total",
    "Batches by why they were closed: full (size cap), idle (nothing else decoding), wait (time cap)",
    ["closed_by"],
)
IN_FLIGHT = Gauge("deepfake_requests_in_flight", "Predict requests admitted and not finished")
QUEUE_DEPTH = Gauge("deepfake_inference_queue_depth", "Decoded images waiting for the model")
REJECTED = Counter("deepfake_rejected_total", "Requests refused before inference", ["reason"])
PREDICTIONS = Counter("deepfake_predictions_total", "Verdicts given", ["label"])
MODEL_INFO = Info("deepfake_model", "The served model")
