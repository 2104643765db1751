"""Prometheus collectors, defined once for the process.

With several uvicorn workers (`deepfake-api serve --workers N`), `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start: every worker then
writes its samples there and `/metrics`, whichever worker answers, reports the sum over all
of them (prometheus-client's multiprocess mode; gauges say how they combine).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
IN_FLIGHT = Gauge(
    "deepfake_requests_in_flight", "Predict requests admitted and not finished", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "deepfake_inference_queue_depth", "Decoded images waiting for the model", multiprocess_mode="livesum"
)
BODY_BYTES_RESERVED = Gauge(
    "deepfake_body_bytes_reserved",
    "Request-body bytes reserved against the memory budget (DEEPFAKE_BODY_BUDGET_BYTES)",
    multiprocess_mode="livesum",
)
REJECTED = Counter("deepfake_rejected_total", "Requests refused before inference", ["reason"])
PREDICTIONS = Counter("deepfake_predictions_total", "Verdicts given", ["label"])
# A gauge, not an Info: multiprocess mode has no Info. Same sample name and labels as before.
MODEL_INFO = Gauge(
    "deepfake_model_info", "The served model (1)", ["name", "version", "sha256"], multiprocess_mode="max"
)


def exposition() -> bytes:
    """The text format: this process's registry, or every worker's samples in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


# Video jobs (jobs/). Queue depth is read from the job store when /metrics is scraped.
JOBS = Counter("deepfake_jobs_total", "Video jobs ended, by outcome", ["outcome"])
JOBS_RECOVERED = Counter(
    "deepfake_jobs_recovered_total", "Running jobs whose worker was lost: queued again or failed", ["action"]
)
JOB_SECONDS = Histogram(
    "deepfake_job_duration_seconds",
    "Analysis time of a finished video job",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
VIDEO_FRAMES = Counter("deepfake_video_frames_total", "Video frames analysed (sampled)")
VIDEO_FRAME_SECONDS = Counter(
    "deepfake_video_frame_seconds_total",
    "Seconds spent analysing sampled frames; frames/s = rate(frames) / rate(seconds)",
)
JOBS_QUEUED = Gauge("deepfake_jobs_active", "Video jobs queued or running", ["state"], multiprocess_mode="max")

ALERT_DELIVERIES = Counter(
    "deepfake_alert_deliveries_total", "Alert delivery attempts, by channel and outcome", ["channel", "outcome"]
)
ALERT_SECONDS = Histogram(
    "deepfake_alert_delivery_seconds",
    "Time of one delivery attempt (webhook answer or SMTP conversation)",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
ALERT_LATENCY = Histogram(
    "deepfake_alert_latency_seconds",
    "From the event (a fake found, a video done) to its successful delivery",
    ["channel"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
ALERTS_PENDING = Gauge(
    "deepfake_alerts_pending", "Alerts waiting for a (next) delivery attempt", multiprocess_mode="max"
)
EVENTS_DROPPED = Counter(
    "deepfake_alert_events_dropped_total", "Image events dropped because too many were waiting for the store"
)
