"""The subscriptions API (with an API key) and what a subscription may target (SSRF-safe webhooks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deepfake_api.app import create_app
from deepfake_api.errors import InvalidSubscription
from tests.alerts.conftest import API_KEY, SECRET, Receiver
from tests.conftest import make_settings
from tests.utils.apps import serving, shared_model
from tests.utils.problems import assert_problem

KEY = {"X-API-Key": API_KEY}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    with serving(jobs_dir=tmp_path, api_key=API_KEY) as c:
        yield c


def test_create_list_get_delete(tmp_path: Path, receiver: Receiver) -> None:
    with serving(
        jobs_dir=tmp_path,
        api_key=API_KEY,
        alert_allow_private=True,
        alert_subscriptions=[{"url": receiver.url, "events": ["video.done"]}],
    ) as client:
        r = client.post(
            "/subscriptions", json={"url": receiver.url, "events": ["image.fake"], "min_score": 0.9}, headers=KEY
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert r.headers["location"] == f"/subscriptions/{created['id']}"
        assert created["secret"].startswith("whsec_") and created["channel"] == "webhook"
        listed = client.get("/subscriptions", headers=KEY).json()["subscriptions"]
        assert [s["id"] for s in listed] == ["settings-0", created["id"]]
        assert all(s["secret"] is None for s in listed), "secrets are shown once, at creation"
        assert client.get(f"/subscriptions/{created['id']}", headers=KEY).json()["min_score"] == 0.9
        assert client.get(f"/subscriptions/{created['id']}/deliveries", headers=KEY).json() == {"deliveries": []}
        assert_problem(client.delete("/subscriptions/settings-0", headers=KEY), 409, "subscription-read-only")
        assert client.delete(f"/subscriptions/{created['id']}", headers=KEY).status_code == 204
        assert_problem(client.get(f"/subscriptions/{created['id']}", headers=KEY), 404, "subscription-not-found")
        assert_problem(client.get("/subscriptions", headers={"X-API-Key": "wrong"}), 401, "unauthorized")


def test_a_settings_webhook_that_does_not_resolve_fails_the_start_with_its_reason(tmp_path: Path) -> None:
    """Issue 27 defect 3: the job queue's start-up failed on it and was retried for ever."""
    hook = {"url": "https://no-such-host.invalid/hook", "secret": SECRET}
    app = create_app(make_settings(jobs_dir=tmp_path, alert_subscriptions=[hook]), model=shared_model())
    with pytest.raises(InvalidSubscription) as refused, TestClient(app):
        pass
    reason = "The webhook target is refused: The host 'no-such-host.invalid' could not be resolved."
    assert refused.value.detail == reason


def test_without_an_api_key_subscriptions_are_the_settings_only(tmp_path: Path) -> None:
    with serving(jobs_dir=tmp_path) as client:
        assert_problem(client.get("/subscriptions"), 403, "subscriptions-disabled")
        assert_problem(
            client.post("/subscriptions", json={"url": "https://example.com/h"}), 403, "subscriptions-disabled"
        )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": "https://127.0.0.1:8443/hook"}, "loopback"),
        ({"url": "https://10.1.2.3/hook"}, "private"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"url": "https://[::ffff:192.168.0.1]/hook"}, "private"),
        ({"url": "https://localhost/hook"}, "loopback"),
        ({"url": "http://example.com/hook"}, "https"),
        ({"url": "https://example.com/h", "emails": ["a@example.com"]}, "either"),
        ({"url": "https://example.com/h", "secret": "nope"}, "whsec_"),
        ({"emails": ["a@example.com"]}, "SMTP"),
    ],
)
def test_refused_subscriptions(client: TestClient, body: dict, why: str) -> None:
    problem = assert_problem(client.post("/subscriptions", json=body, headers=KEY), 422, "invalid-subscription")
    assert why in problem["detail"]


def test_unknown_event_is_a_validation_error(client: TestClient) -> None:
    r = client.post("/subscriptions", json={"url": "https://example.com/h", "events": ["image.real"]}, headers=KEY)
    assert_problem(r, 422, "validation-error")
