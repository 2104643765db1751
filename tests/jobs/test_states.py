"""jobs/states.py: each change of a job's record, as the store applies it (None: no change)."""

from __future__ import annotations

from deepfake_api.errors import WorkerLost
from deepfake_api.jobs import states
from deepfake_api.records import check_record


def _job(**fields: object) -> dict[str, object]:
    return states.new_job("video", "198.51.100.1", request_id="r1", **fields)  # type: ignore[arg-type]


def test_an_admitted_job_holds_a_lease_until_it_is_queued_for_good() -> None:
    job = _job(lease_until=123.0)
    assert (job["state"], job["expires_at"]) == ("queued", 123.0)
    job = states.described(job, upload={"filename": "a.mp4", "bytes": 9}, video={"fps": 4.0}, lease_until=456.0)
    assert job["expires_at"] == 456.0 and job["upload"] == {"filename": "a.mp4", "bytes": 9}
    assert states.queued_for_good(job)["expires_at"] is None
    check_record(job)  # every state a change makes is a valid record


def test_only_a_queued_job_is_claimed_and_its_claim_ends_the_lease() -> None:
    job = states.claimed(_job(lease_until=1.0), token="t1")
    assert job is not None and (job["state"], job["owner"], job["attempts"], job["expires_at"]) == (
        "running",
        "t1",
        1,
        None,
    )
    assert states.claimed(dict(job), token="t2") is None  # a duplicate message for a running job


def test_a_cancel_stops_a_queued_job_now_and_asks_a_running_one_to_stop() -> None:
    queued = states.cancelled(_job(), ttl_s=60)
    assert queued is not None and queued["state"] == "cancelled" and queued["expires_at"] is not None
    running = states.cancelled(states.claimed(_job(), token="t") or {}, ttl_s=60)
    assert running is not None and (running["state"], running["cancel_requested"]) == ("running", True)
    assert states.cancelled(queued, ttl_s=60) is None  # finished: nothing to do


def test_the_reaper_requeues_only_the_lost_owners_job_and_fails_with_a_problem() -> None:
    running = states.claimed(_job(), token="lost")
    assert running is not None
    assert states.requeued(dict(running), owner="other") is None  # another worker has it now
    again = states.requeued(dict(running), owner="lost")
    assert again is not None and (again["state"], again["owner"]) == ("queued", None)
    failed = states.failed(dict(running), WorkerLost("gone"), ttl_s=60)
    assert failed["state"] == "failed" and failed["problem"]["type"].endswith("/worker-lost")
    check_record(failed)
