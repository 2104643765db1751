"""services/jobs.py through the real app: a video's place is taken before its upload (the caps
hold under concurrent uploads), a spool that cannot be written is a 503, and a place whose queueing
failed half-way is freed by itself."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.utils.apps import build_app, serving, serving_async
from tests.utils.disks import tmpfs
from tests.utils.problems import assert_problem
from tests.utils.videos import write_video

CLIP = write_video([np.full((64, 64, 3), 90, np.uint8)] * 2, fps=4)
BOUNDARY = "d3adb33fd3adb33f"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _post(client: TestClient, data: bytes = CLIP):  # type: ignore[no-untyped-def]
    return client.post("/videos", files={"file": ("a.mp4", data)})


@pytest.mark.anyio
async def test_an_upload_in_progress_holds_its_place_under_the_caps(tmp_path: Path) -> None:
    """Issue 27 defect 2: the caps were counted before a long upload and the job created after it."""
    app = build_app(jobs_dir=tmp_path, jobs_embedded_worker=False, jobs_max_per_client=1)
    async with serving_async(app) as client:
        first_chunk_read, release = asyncio.Event(), asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield HEAD + CLIP[:64]
            first_chunk_read.set()  # the server asked for more: the upload is under way
            await release.wait()
            yield CLIP[64:] + TAIL

        slow = asyncio.create_task(client.post("/videos", content=slow_body(), headers=MULTIPART))
        await asyncio.wait_for(first_chunk_read.wait(), 30)
        files = {"file": ("b.mp4", CLIP)}
        assert_problem(await client.post("/videos", files=files), 429, "too-many-jobs")
        release.set()
        assert (await slow).status_code == 202
        assert_problem(await client.post("/videos", files=files), 429, "too-many-jobs")


def test_a_full_spool_is_503_queue_full_and_keeps_nothing(tmp_path: Path) -> None:
    """Issue 27 defect 10: ENOSPC while the upload streamed to the spool answered 400 invalid-upload."""
    with (
        tmpfs(tmp_path / "spool", size_kib=256),
        serving(jobs_dir=tmp_path, jobs_embedded_worker=False, jobs_max_per_client=1, jobs_retry_after_s=9) as client,
    ):
        r = _post(client, b"\0" * (1024 * 1024))
        assert_problem(r, 503, "queue-full")
        assert r.headers["retry-after"] == "9"
        assert list((tmp_path / "spool").iterdir()) == []
        assert _post(client).status_code == 202  # the refused upload held no place


def test_a_read_only_spool_is_503_never_500(tmp_path: Path) -> None:
    """Issue 27 defect 12: the spool file was made outside the error handling (500 internal-error)."""
    with (
        tmpfs(tmp_path / "spool", read_only=True),
        serving(jobs_dir=tmp_path, jobs_embedded_worker=False, jobs_max_per_client=1, jobs_retry_after_s=9) as client,
    ):
        for _ in range(2):  # and no place is left taken
            r = _post(client)
            body = assert_problem(r, 503, "queue-unavailable")
            assert "EROFS" in body["detail"]
            assert r.headers["retry-after"] == "9"


def test_a_place_whose_queueing_failed_is_freed_even_when_the_clean_up_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 defect 11: with the disk nearly full the broker refused the message and the clean-up
    failed on the same disk: the job stayed `queued` for ever, counted against the caps."""
    settings = {"jobs_dir": tmp_path, "jobs_max_per_client": 1, "jobs_admission_lease_s": 1.0, "jobs_lease_s": 1.0}
    with serving(**settings) as client:
        queue = client.app.state.jobs  # type: ignore[attr-defined]
        disk_full = False
        modify, delete = queue.store.modify, queue.store.delete

        def broker_write(*args: object) -> None:
            nonlocal disk_full
            disk_full = True  # from here on every write fails, as on a disk that has just filled
            raise sqlite3.OperationalError("database or disk is full")

        def store_write(real):  # type: ignore[no-untyped-def]
            def write(*args: object) -> object:
                if disk_full:
                    raise sqlite3.OperationalError("database or disk is full")
                return real(*args)

            return write

        with monkeypatch.context() as m:
            m.setattr(queue, "_task", broker_write)
            m.setattr(queue.store, "modify", store_write(modify))  # the clean-up fails too
            m.setattr(queue.store, "delete", store_write(delete))
            assert_problem(_post(client), 503, "queue-unavailable")
        time.sleep(1.2)  # its lease runs out
        assert queue.store.active() == []
        r = _post(client)
        assert r.status_code == 202, r.text  # the place is free again
        mine = f"{r.json()['id']}.video"

        def orphans() -> list[str]:
            return [p.name for p in (tmp_path / "spool").glob("*.video") if p.name != mine]

        deadline = time.monotonic() + 30  # and the reaper's purge takes the orphaned video
        while orphans() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphans() == []
