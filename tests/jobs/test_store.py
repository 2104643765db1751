"""jobs/store.py: the SQLite and Redis stores agree, and what a dead worker leaves in the spool goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_api.jobs.store import JobStore, RedisStore, SqliteStore
from tests.utils.apps import serving


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        s: JobStore = SqliteStore(tmp_path)
    else:
        s = RedisStore(request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex}:", spool=tmp_path)
    yield s
    s.close()


def _doc(state: str, expires_at: float | None) -> dict[str, object]:
    return {"id": uuid.uuid4().hex, "state": state, "client": "c", "expires_at": expires_at}


def test_an_expired_record_is_not_active_in_either_store(store: JobStore) -> None:
    """Issue 27 defect 6: SQLite's active() kept expired records (they counted against the caps)."""
    live = _doc("queued", time.time() + 3600)
    store.create(live)
    store.create(_doc("queued", time.time() - 1))
    store.create(_doc("running", None))
    assert sorted(d["state"] for d in store.active()) == ["queued", "running"]
    assert live["id"] in {d["id"] for d in store.active()}


def test_admission_sees_the_active_jobs_and_can_refuse(store: JobStore) -> None:
    store.create(_doc("queued", None))
    seen: list[int] = []

    def admit(active: list[dict[str, object]]) -> None:
        seen.append(len(active))
        if len(active) >= 2:
            raise RuntimeError("full")

    store.create(_doc("queued", None), admit)
    with pytest.raises(RuntimeError, match="full"):
        store.create(_doc("queued", None), admit)
    assert seen == [1, 2] and len(store.active()) == 2


HOLD_A_COPY = """
import sys, time
from pathlib import Path
from deepfake_api.jobs.store import RedisStore
store = RedisStore(sys.argv[1], prefix=sys.argv[2], spool=Path(sys.argv[3]))
src = Path(sys.argv[3]) / "upload.bin"
src.write_bytes(b"video" * 1000)
store.create({"id": "j1", "state": "running", "expires_at": None})
store.put_file("j1", src)
with store.open_file("j1") as copy:
    print(copy.name, flush=True)
    time.sleep(120)
"""


def _worker_holding_a_copy(redis_url: str, spool: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_COPY, redis_url, f"test-{uuid.uuid4().hex}:", str(spool)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_a_killed_workers_copy_of_its_video_is_removed_when_a_worker_starts(redis_url: str, tmp_path: Path) -> None:
    """Issue 27 defect 14: a worker killed mid-job left its temporary copy in the spool for ever."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    killed, killed_copy = _worker_holding_a_copy(redis_url, spool)
    alive, alive_copy = _worker_holding_a_copy(redis_url, spool)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        assert (spool / killed_copy).is_file()  # left behind
        with serving(jobs_dir=tmp_path, jobs_backend="redis", redis_url=redis_url):
            assert not (spool / killed_copy).exists()
            assert (spool / alive_copy).is_file()  # another worker on this host still reads its own
    finally:
        for proc in (killed, alive):
            proc.kill()
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
