"""records.py: what the store keeps is validated where it is written; one enum of event names; the
committed model card reads back as its type."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from deepfake_api.alerts.subscriptions import EVENTS
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.jobs.store import SqliteStore
from deepfake_api.records import EventName, ModelCard, read_model_card
from deepfake_api.schemas import Subscription, SubscriptionCreate
from tests.conftest import MODEL_PATH, make_settings


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path)


def _job(tmp_path: Path) -> dict[str, object]:
    queue = JobQueue(make_settings(jobs_dir=tmp_path))
    try:
        return queue.new_job("video", "203.0.113.9", request_id="r1")
    finally:
        queue.close()


def test_a_malformed_job_is_refused_when_written_not_when_read(store: SqliteStore, tmp_path: Path) -> None:
    job = _job(tmp_path / "q")
    with pytest.raises(ValidationError, match="progress"):
        store.create({**job, "progress": {"done": "three"}})
    assert store.get(str(job["id"])) is None  # nothing half-written for GET /jobs/{id} to trip on
    store.create(job)
    with pytest.raises(ValidationError, match="state"):
        store.modify(str(job["id"]), lambda d: {**d, "state": "paused"})
    assert store.get(str(job["id"]))["state"] == "queued"  # type: ignore[index]


def test_subscription_and_alert_records_are_checked_too(store: SqliteStore) -> None:
    sub = {"id": "sub_1", "state": "subscription", "source": "api", "channel": "webhook", "min_score": 0.5}
    with pytest.raises(ValidationError, match="events"):
        store.create({**sub, "events": ["image.real"], "created_at": 1.0, "url": "https://example.com/h"})
    with pytest.raises(ValidationError, match="status"):
        store.create({"id": "msg_1", "state": "alert", "status": "lost"})


def test_event_names_are_one_enum() -> None:
    assert [e.value for e in EventName] == list(EVENTS)
    (events,) = typing.get_args(Subscription.model_fields["events"].annotation)
    assert events is EventName
    assert SubscriptionCreate().events == [EventName.IMAGE_FAKE, EventName.VIDEO_FAKE]


def test_the_committed_model_card_reads_back_as_its_type() -> None:
    card = read_model_card(MODEL_PATH.read_text())
    assert isinstance(card, ModelCard)
    assert [d.name for d in card.detectors] == list(card.fusion.weights)
    low, high = card.decision.uncertain_band
    assert 0 <= low <= card.decision.threshold <= high <= 1
    with pytest.raises(ValidationError, match="decision"):
        read_model_card(MODEL_PATH.read_text().replace('"decision"', '"decisions"'))
