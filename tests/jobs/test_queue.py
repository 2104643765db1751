"""jobs/queue.py: a message that reaches a process without a runner goes back later, not in a loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from deepfake_api.jobs.queue import RUNNERLESS_DELAY_S, JobQueue
from tests.conftest import make_settings


def test_a_message_without_a_runner_is_put_back_later_not_at_once(tmp_path: Path) -> None:
    """Issue 27 defect 5: it was enqueued again at once, and taken again at once: a hot loop."""
    queue = JobQueue(make_settings(jobs_dir=tmp_path))
    try:
        assert queue.runner is None
        before = datetime.now(UTC).replace(tzinfo=None)  # huey's etas are naive UTC
        queue._run("job-1")  # what the consumer calls for the message
        # One message back, not due before the delay (a consumer keeps it in its schedule until then).
        (again,) = queue.huey.pending()
        assert again.args == ("job-1",)
        assert again.eta is not None and again.eta >= before + timedelta(seconds=RUNNERLESS_DELAY_S)
    finally:
        queue.close()
