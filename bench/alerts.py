"""Alert delivery, measured in one run through the real app (in process, embedded worker, SQLite
queue) to a real local webhook receiver: the latency from a fake verdict to its signed webhook
arriving, and /predict's own time with a subscription against without one (the ratio shows
whether alerting slows the answer).

    python -m bench.alerts [--n 30]

Prints the numbers and writes bench/results/alerts-<timestamp>.json. Needs ../shared/datasets (a
face the served model calls fake is picked from it).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.conftest import DATASET_DIR, wait_ready
from tests.jobs.conftest import judged_tile

from deepfake_api.app import create_app
from deepfake_api.config import Settings

RESULTS = Path(__file__).with_name("results")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def receiver() -> tuple[str, dict[str, float], ThreadingHTTPServer]:
    arrived: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived[self.headers["webhook-id"]] = time.time()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook", arrived, server


def timed_predicts(client: TestClient, png: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.post("/predict", files={"file": ("f.png", png)})
        times.append(time.perf_counter() - started)
        assert r.status_code == 200 and r.json()["label"] == "fake", r.text
    return times


def run(n: int) -> dict[str, Any]:
    url, arrived, server = receiver()
    scratch = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    base = {"log_json": True, "log_level": "WARNING", "alert_allow_private": True}
    with TestClient(create_app(Settings(jobs_dir=scratch / "plain", **base))) as client:
        wait_ready(client, timeout=300)
        buf = io.BytesIO()
        judged_tile(client, "fake", ("stylegan3", "celebahq-pairs", "sd-portraits")).save(buf, "PNG")
        png = buf.getvalue()
        timed_predicts(client, png, 3)  # warm
        without = timed_predicts(client, png, n)
    subs = [{"url": url, "secret": SECRET, "events": ["image.fake"]}]
    with TestClient(create_app(Settings(jobs_dir=scratch / "alerts", alert_subscriptions=subs, **base))) as client:
        wait_ready(client, timeout=300)
        timed_predicts(client, png, 3)
        with_sub = timed_predicts(client, png, n)
        deadline = time.monotonic() + 120
        while len(arrived) < n + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        alerts = client.app.state.alerts.deliveries("settings-0", limit=10_000)
    server.shutdown()
    latencies = sorted(arrived[d["id"]] - d["created_at"] for d in alerts if d["id"] in arrived)
    return {
        "n": n,
        "delivered": len(latencies),
        "latency_s": {
            "p50": round(statistics.median(latencies), 3),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "max": round(latencies[-1], 3),
        },
        "predict_s_median": {
            "without": round(statistics.median(without), 4),
            "with": round(statistics.median(with_sub), 4),
        },
        "predict_with_over_without": round(statistics.median(with_sub) / statistics.median(without), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    if not (DATASET_DIR / "MANIFEST.csv").is_file():
        print(f"needs the dataset at {DATASET_DIR}", file=sys.stderr)
        return 2
    report = run(args.n)
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"alerts-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
