"""The job queue: Huey carries job ids to workers; the job store (store.py) holds each job's state.

Backend by settings: `sqlite` (SqliteHuey and a SQLite job store in jobs_dir: nothing to run
beside the API, for `make run`) or `redis` (RedisHuey and a Redis job store: API replicas and
`deepfake-api worker` services share them). Same code either way.

Huey removes a message when a worker takes it, so a worker killed mid-job (kill -9, OOM) would
lose it: the job store's lease covers that. A running job's worker writes a heartbeat with every
frame; the reaper (a thread in every process that runs a worker) finds running jobs whose
heartbeat is older than jobs_lease_s and queues them again, or fails them with `worker-lost`
after jobs_max_attempts. A duplicate message is harmless: a worker claims a job only from
`queued` (compare-and-set), and only the claim's owner may write its progress or result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer

from deepfake_api import metrics
from deepfake_api.config import Settings
from deepfake_api.errors import QueueUnavailable, WorkerLost
from deepfake_api.jobs import states
from deepfake_api.jobs.states import failed, now
from deepfake_api.jobs.store import Doc, JobStore, RedisStore, SqliteStore, clear_partial_uploads

log = logging.getLogger("deepfake_api.jobs")
TASK = "analyse_video"
RUNNERLESS_DELAY_S = 5.0
"""A message that reached a process with no runner goes back this much later, not at once (a hot loop)."""


class _HostedConsumer(Consumer):  # type: ignore[misc]
    """A consumer inside a process that owns its signals (uvicorn): it must not install handlers."""

    def _set_signal_handlers(self) -> None:
        pass


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        spool = settings.jobs_dir / "spool"
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool = spool
        self.store: JobStore
        # Two queues: videos (long, one at a time) and short tasks (alert deliveries: the alerts side
        # registers its task on it), never behind a video.
        if settings.jobs_backend == "redis":
            self.huey: Any = RedisHuey("deepfake-jobs", url=settings.redis_url, results=False)
            self.short_huey: Any = RedisHuey("deepfake-alerts", url=settings.redis_url, results=False)
            self.store = RedisStore(settings.redis_url, spool=spool)
        else:
            queue_file = str(settings.jobs_dir / "queue.sqlite3")
            self.huey = SqliteHuey("deepfake-jobs", filename=queue_file, results=False, timeout=30)
            self.short_huey = SqliteHuey("deepfake-alerts", filename=queue_file, results=False, timeout=30)
            self.store = SqliteStore(settings.jobs_dir)
        self.runner: Callable[[str], None] | None = None
        self.on_reap: list[Callable[[], None]] = []
        """Called after every reaper round (the alerts side re-queues its lost deliveries)."""
        self._task = self.huey.task(name=TASK)(self._run)
        self._consumer: Consumer | None = None
        self._short_consumer: Consumer | None = None
        self._reaper: threading.Thread | None = None
        self.alive_file: Path | None = None  # touched after every good reaper round (a worker's healthcheck)
        self._stop = threading.Event()

    # -- API side ----------------------------------------------------------------------------

    def new_job(self, kind: str, client: str, **fields: Any) -> Doc:
        return states.new_job(kind, client, **fields)

    def enqueue(self, job_id: str) -> None:
        try:
            self._task(job_id)
        except Exception as exc:  # the broker is down: the job cannot be queued
            raise QueueUnavailable(f"The job queue cannot be reached ({type(exc).__name__}).") from None

    def depth(self) -> dict[str, int]:
        active = self.store.active()
        return {state: sum(1 for d in active if d["state"] == state) for state in ("queued", "running")}

    # -- worker side -------------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        if self.runner is None:  # a message reached a process without a worker: back, later
            log.warning("job message without a runner", extra={"job_id": job_id, "retry_s": RUNNERLESS_DELAY_S})
            try:
                self._task.schedule(args=(job_id,), delay=RUNNERLESS_DELAY_S)
            except Exception:  # the broker is away: the reaper takes the job over after its lease
                log.warning("job message not put back", extra={"job_id": job_id})
            return
        self.runner(job_id)

    def claim(self, job_id: str) -> Doc | None:
        """queued -> running, owned by a fresh token; None when the job is not queued (cancelled,
        finished, expired, or a duplicate message for a job another worker runs)."""
        token = states.new_token()
        doc = self.store.modify(job_id, partial(states.claimed, token=token))
        return doc if doc is not None and doc.get("owner") == token and doc["state"] == "running" else None

    def start_worker(self, *, hosted: bool) -> None:
        """Consume jobs in this process: one worker thread (a video uses every core already)."""
        clear_partial_uploads(self.spool)
        cls = _HostedConsumer if hosted else Consumer
        # max_delay: an idle worker polls at least every second, so a new job starts promptly.
        self._consumer = cls(self.huey, workers=1, worker_type="thread", periodic=False, max_delay=1.0)
        # Two senders: one receiver that hangs (up to alert_timeout_s) does not hold up the others.
        self._short_consumer = _HostedConsumer(
            self.short_huey, workers=2, worker_type="thread", periodic=False, max_delay=0.5, scheduler_interval=1
        )
        self._short_consumer.start()
        self._stop.clear()
        self._reaper = threading.Thread(target=self._reap_loop, name="job-reaper", daemon=True)
        self._reaper.start()
        if hosted:
            self._consumer.start()

    def run_worker(self) -> None:
        """Block consuming jobs (`deepfake-api worker`): SIGTERM/SIGINT stop it after the current job."""
        self.start_worker(hosted=False)
        assert self._consumer is not None
        try:
            self._consumer.run()
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        if self._short_consumer is not None:
            self._short_consumer.stop(graceful=True)
            self._short_consumer = None
        if self._reaper is not None:
            self._reaper.join(timeout=5)
            self._reaper = None

    def _reap_loop(self) -> None:
        interval = max(0.5, min(5.0, self.settings.jobs_lease_s / 3))
        failing = False
        while True:  # a first round at once: the heartbeat file exists as soon as the worker runs
            try:
                self.reap()
                if self.alive_file is not None:  # this process runs and reaches the store
                    self.alive_file.touch()
                if failing:
                    log.info("reaper rounds succeed again")
                failing = False
            except Exception as exc:  # the store is unreachable: try again next round, say so once
                if not failing:
                    log.warning("reaper round failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                failing = True
            if self._stop.wait(interval):
                return

    def reap(self) -> None:
        """Requeue or fail running jobs whose worker stopped reporting; purge expired jobs; update gauges."""
        settings = self.settings
        active = self.store.active()
        for doc in active:
            if doc["state"] != "running" or now() - (doc.get("heartbeat_at") or 0) <= settings.jobs_lease_s:
                continue
            stale_owner = doc.get("owner")
            requeued: list[bool] = []  # set by this round's own change, not guessed from the clock

            def change(d: Doc, owner: str | None = stale_owner, requeued: list[bool] = requeued) -> Doc | None:
                if d["state"] != "running" or d.get("owner") != owner:
                    return None  # it moved on meanwhile
                if d["attempts"] >= settings.jobs_max_attempts:
                    return failed(
                        d,
                        WorkerLost(
                            f"The worker analysing this video stopped {d['attempts']} time(s) without finishing "
                            f"(no report for {settings.jobs_lease_s:g} s); the video is not tried again."
                        ),
                        settings.jobs_result_ttl_s,
                    )
                requeued.append(True)
                return states.requeued(d, owner=owner)

            new = self.store.modify(doc["id"], change)
            if new is None:
                continue
            if requeued:
                log.warning("worker lost: job queued again", extra={"job_id": doc["id"], "attempts": new["attempts"]})
                metrics.JOBS_RECOVERED.labels("requeued").inc()
                self.enqueue(doc["id"])
            elif new["state"] == "failed":
                log.warning("worker lost: job failed", extra={"job_id": doc["id"], "attempts": new["attempts"]})
                metrics.JOBS_RECOVERED.labels("failed").inc()
                self.store.drop_file(doc["id"])
        self.store.purge_expired()
        for hook in self.on_reap:
            hook()

    def close(self) -> None:
        self.stop()
        self.store.close()
