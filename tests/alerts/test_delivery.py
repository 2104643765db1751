"""Alert delivery through the real app, queue and model, to a real HTTP receiver: signed as
Standard Webhooks (verified with the published library), retried with backoff on 5xx, delivered
once, logged; never slowing /predict; surviving a restart between attempts."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from tests.alerts.conftest import API_KEY, SECRET, Receiver, predict, wait_delivery
from tests.jobs.test_videos import wait_done
from tests.utils.apps import serving
from tests.utils.videos import write_video


def _app(tmp_path: Path, receiver: Receiver, events: list[str], **overrides: object):  # type: ignore[no-untyped-def]
    settings: dict[str, object] = {
        "jobs_dir": tmp_path,
        "api_key": API_KEY,
        "alert_allow_private": True,  # the receiver is on loopback
        "alert_backoff_s": 0.3,
        "alert_timeout_s": 2.0,
        "alert_subscriptions": [{"url": receiver.url, "secret": SECRET, "events": events}],
    }
    settings.update(overrides)
    return serving(**settings)


def test_503_twice_then_accepted_is_three_signed_attempts_and_one_delivery(
    tmp_path: Path, receiver: Receiver, fake_png: bytes
) -> None:
    receiver.statuses = [503, 503, 200]
    with _app(tmp_path, receiver, ["image.fake"]) as client:
        answer = predict(client, fake_png)
        assert answer["label"] == "fake"
        got = receiver.wait_for(3)
        delivery = wait_delivery(client, "settings-0", "delivered")
    assert len(got) == 3
    # Each attempt verifies with the published algorithm and the subscription's secret.
    bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in got]
    assert len({r.headers["webhook-id"] for r in got}) == 1 == len({json.dumps(b) for b in bodies})
    assert got[0].headers["webhook-id"] == delivery["id"]
    event = bodies[0]
    assert event["type"] == "image.fake"
    assert event["data"]["request_id"] == answer["request_id"]
    assert event["data"]["score"] == answer["score"] and event["data"]["label"] == "fake"
    assert event["data"]["model"]["version"] == answer["model"]["version"]
    assert len(event["data"]["faces"]) == sum(f["status"] == "judged" for f in answer["faces"])
    assert len(got[0].body) < 4096, "the verdict, never the image"
    # A forged or altered body does not verify.
    tampered = got[0].body.replace(b"image.fake", b"image.real")
    try:
        Webhook(SECRET).verify(tampered, got[0].headers)
        raise AssertionError("a tampered body verified")
    except Exception as exc:  # WebhookVerificationError
        assert "signature" in str(exc).lower()
    # The log: two retries (503), then delivered; backoff between them.
    attempts = delivery["attempts"]
    assert [(a["outcome"], a["status"]) for a in attempts] == [("retry", 503), ("retry", 503), ("delivered", 200)]
    assert got[1].at - got[0].at >= 0.3 * 0.5 and got[2].at - got[1].at >= 0.6 * 0.5


def test_a_4xx_is_not_retried(tmp_path: Path, receiver: Receiver, fake_png: bytes) -> None:
    receiver.statuses = [410]
    with _app(tmp_path, receiver, ["image.fake"]) as client:
        predict(client, fake_png)
        delivery = wait_delivery(client, "settings-0", "failed")
    assert [(a["outcome"], a["status"]) for a in delivery["attempts"]] == [("failed", 410)]
    assert len(receiver.got) == 1


def test_a_receiver_that_hangs_does_not_hold_up_predict(tmp_path: Path, receiver: Receiver, fake_png: bytes) -> None:
    receiver.hold = True  # holds every request until released (the attempt times out first)
    with _app(tmp_path, receiver, ["image.fake"], alert_max_attempts=2) as client:
        predict(client, fake_png)
        receiver.wait_for(1)
        # The receiver is holding the first alert's connection; the service still answers, at once
        # in the sense that no answer waits for it: the receiver has not been released.
        for _ in range(3):
            assert predict(client, fake_png)["label"] == "fake"
        assert not receiver.release.is_set()
        delivery = wait_delivery(client, "settings-0", "failed", timeout=90)
    first = delivery["attempts"][0]
    assert first["outcome"] == "retry" and first["status"] is None and first["error"]


def test_a_restart_between_attempts_still_delivers(tmp_path: Path, receiver: Receiver, fake_png: bytes) -> None:
    receiver.statuses = [503, 200]
    with _app(tmp_path, receiver, ["image.fake"], alert_backoff_s=3.0) as client:
        predict(client, fake_png)
        receiver.wait_for(1)
    # Stopped with the second attempt scheduled (in the queue's SQLite file), not yet sent.
    assert len(receiver.got) == 1
    with _app(tmp_path, receiver, ["image.fake"], alert_backoff_s=3.0) as client:
        got = receiver.wait_for(2)
        delivery = wait_delivery(client, "settings-0", "delivered")
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    assert [a["outcome"] for a in delivery["attempts"]] == ["retry", "delivered"]


def test_a_finished_video_is_announced_with_a_link_to_its_job(tmp_path: Path, receiver: Receiver) -> None:
    import numpy as np

    clip = write_video([np.full((64, 64, 3), 90, np.uint8)] * 2, fps=4)
    with _app(tmp_path, receiver, ["video.done"], public_url="https://deepfake.example.com/") as client:
        job = client.post("/videos", files={"file": ("a.mp4", clip)}, headers={"X-API-Key": API_KEY}).json()
        assert wait_done(_Keyed(client), job["id"])["state"] == "done"
        got = receiver.wait_for(1)
    event = Webhook(SECRET).verify(got[0].body, got[0].headers)
    assert event["type"] == "video.done"
    assert event["data"]["job_id"] == job["id"] and event["data"]["label"] == "no_face"
    assert event["data"]["job_url"] == f"https://deepfake.example.com/jobs/{job['id']}"


class _Keyed:
    """A TestClient whose GETs carry the API key (wait_done polls with plain GETs)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def get(self, url: str):  # type: ignore[no-untyped-def]
        return self.client.get(url, headers={"X-API-Key": API_KEY})


def test_deliveries_leave_their_metrics(tmp_path: Path, receiver: Receiver, fake_png: bytes) -> None:
    from tests.api.test_metrics import _delta, _get, _scrape

    receiver.statuses = [502, 204]
    with _app(tmp_path, receiver, ["image.fake"]) as client:
        before = _scrape(client)
        predict(client, fake_png)
        wait_delivery(client, "settings-0", "delivered")
        after = _scrape(client)
    assert _delta(before, after, "deepfake_alert_deliveries_total", channel="webhook", outcome="retry") == 1
    assert _delta(before, after, "deepfake_alert_deliveries_total", channel="webhook", outcome="delivered") == 1
    assert _delta(before, after, "deepfake_alert_delivery_seconds_count", channel="webhook") == 2
    assert _delta(before, after, "deepfake_alert_latency_seconds_count", channel="webhook") == 1
    assert _get(after, "deepfake_alerts_pending") == 0
