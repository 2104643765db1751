"""The jobs service: what the /videos and /jobs routes call instead of the store and the queue.

Admission and creation are one store transaction: a video's place under the caps (all clients,
this client) is taken before its upload starts, so concurrent uploads cannot pass the caps. Until
its job is queued for good the place carries a lease (`expires_at`): an upload cut off, a full
disk or a broker gone half-way frees it by itself, even when the clean-up cannot reach the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from anyio import to_thread

from deepfake_api import video
from deepfake_api.errors import JobNotFound, QueueFull, QueueUnavailable, TooManyJobs
from deepfake_api.jobs import states
from deepfake_api.jobs.queue import JobQueue
from deepfake_api.jobs.store import ACTIVE, FINAL, Doc, spool_file
from deepfake_api.jobs.video_job import frame_blob, limits_of

T = TypeVar("T")
Receive = Callable[[BinaryIO], Awaitable[tuple[str, int]]]
"""Streams the upload into the open spool file; returns its filename and size."""
POLL_S = 0.25
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


class JobService:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.store = queue.store
        self.settings = queue.settings

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` off the event loop; an unreachable store (broker down, disk gone) is a 503."""
        try:
            return await to_thread.run_sync(partial(fn, *args))
        except self.store.errors as exc:
            raise QueueUnavailable(
                f"The job store cannot be reached ({type(exc).__name__}); retry shortly.", headers=self._retry()
            ) from None

    # -- submit ----------------------------------------------------------------------------------

    async def submit_video(self, client: str, request_id: str, receive: Receive, *, explain: bool = False) -> Doc:
        """Take a place, receive the upload into the spool, check it, store it and queue its job
        (`explain`: the finished job's top frames get heatmaps, jobs/video_job.py)."""
        settings = self.settings
        upload_s = max(settings.upload_timeout_s, 300.0)
        lease_until = states.now() + upload_s + settings.jobs_admission_lease_s
        doc = states.new_job("video", client, request_id=request_id, lease_until=lease_until, explain=explain)
        await self.call(self.store.create, doc, self._admit(client))
        part: Path | None = None
        try:
            try:
                fd, part = spool_file(self.queue.spool)
                with os.fdopen(fd, "wb") as sink:
                    filename, size = await receive(sink)
            except OSError as exc:
                raise self._spool_error(exc) from None
            return await self.call(self._check_and_queue, doc, part, filename, size)
        except BaseException:
            await asyncio.shield(self._release(doc["id"]))
            raise
        finally:
            if part is not None:
                with contextlib.suppress(OSError):  # moved into the job's file, or refused
                    part.unlink(missing_ok=True)

    def _admit(self, client: str) -> Callable[[list[Doc]], None]:
        settings = self.settings

        def admit(active: list[Doc]) -> None:
            if len(active) >= settings.jobs_max_active:
                raise QueueFull(
                    f"{len(active)} videos are queued or running, the limit is {settings.jobs_max_active}.",
                    headers=self._retry(),
                )
            mine = sum(1 for d in active if d.get("client") == client)
            if mine >= settings.jobs_max_per_client:
                raise TooManyJobs(
                    f"{mine} of your videos are queued or running, the limit is {settings.jobs_max_per_client}.",
                    headers=self._retry(),
                )

        return admit

    def _spool_error(self, exc: OSError) -> QueueFull | QueueUnavailable:
        if exc.errno in NO_ROOM:
            return QueueFull("There is no room to store the video now; retry later.", headers=self._retry())
        return QueueUnavailable(
            f"The video spool cannot be written ({errno.errorcode.get(exc.errno or 0, type(exc).__name__)}); "
            "retry later.",
            headers=self._retry(),
        )

    def _check_and_queue(self, doc: Doc, part: Path, filename: str, size: int) -> Doc:
        """Refuse a bad video from its header (4xx), else store it and queue its job."""
        info = video.probe(part, limits_of(self.settings))
        upload = {"filename": filename[:255], "bytes": size, "container": info.container}
        lease_until = states.now() + self.settings.jobs_admission_lease_s
        change = partial(states.described, upload=upload, video=info.as_dict(), lease_until=lease_until)
        if self.store.modify(doc["id"], change) is None:
            raise QueueUnavailable("The video's place in the queue expired; send it again.", headers=self._retry())
        try:
            self.store.put_file(doc["id"], part)
        except OSError as exc:
            raise self._spool_error(exc) from None
        self.queue.enqueue(doc["id"])

        new = self.store.modify(doc["id"], states.queued_for_good)
        if new is None:
            raise QueueUnavailable("The video's place in the queue expired; send it again.", headers=self._retry())
        return new

    async def _release(self, job_id: str) -> None:
        """Give back a place that did not become a queued job (best effort: its lease frees it anyway)."""
        try:
            await to_thread.run_sync(self.store.delete, job_id)
        except Exception:
            pass

    # -- read, wait, cancel ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Doc:
        doc = await self.call(self.store.get, job_id)
        if doc is None or doc.get("kind", "video") != "video":  # the store also keeps reports (api/reports.py)
            raise JobNotFound(f"No job {job_id[:64]!r}: it never existed, was deleted, or its result expired.")
        return doc

    async def wait(self, doc: Doc, seconds: float) -> Doc:
        """The job once it is final, or as it is after `seconds` (at most video_max_wait_s)."""
        deadline = time.monotonic() + min(seconds, self.settings.video_max_wait_s)
        while doc["state"] in ACTIVE and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            fresh = await self.call(self.store.get, doc["id"])
            doc = fresh or doc
        return doc

    async def cancel_or_delete(self, job_id: str) -> Doc | None:
        """A queued job is cancelled, a running one asked to stop (the job returned); a finished
        one is deleted with its result (None)."""
        doc = await self.get(job_id)
        if doc["state"] in FINAL:
            await self.call(self.store.delete, job_id)
            return None
        new = await self.call(
            self.store.modify, job_id, partial(states.cancelled, ttl_s=self.settings.jobs_result_ttl_s)
        )
        if new is None:
            raise JobNotFound(f"No job {job_id[:64]!r}.")
        if new["state"] == "cancelled":
            await self.call(self.store.drop_file, job_id)
        return new

    async def frame(self, job_id: str, index: int) -> bytes:
        data = await self.call(self.store.get_blob, job_id, frame_blob(index))
        if data is None:
            raise JobNotFound(f"Job {job_id[:64]!r} has no kept frame {index}.")
        return data

    def depth(self) -> dict[str, int]:
        """Jobs queued and running now (the /metrics gauges)."""
        return self.queue.depth()

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.jobs_retry_after_s)}


def is_final(doc: Doc) -> bool:
    return doc["state"] in FINAL


def is_active(doc: Doc) -> bool:
    return doc["state"] in ACTIVE
