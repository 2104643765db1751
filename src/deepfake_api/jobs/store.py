"""Job records and their files, in SQLite (embedded) or Redis (shared by API replicas and workers).

A job is one JSON document. Every change goes through `modify(id, change)`, which reads the
document, lets `change` return the new one (or None: leave it) and writes it atomically against
concurrent writers (an IMMEDIATE transaction in SQLite; WATCH/MULTI in Redis): a worker's
progress, a client's cancel and the reaper's "this worker is gone" never overwrite each other.
Finished jobs expire after their `expires_at`. Files: the uploaded video (`put_file`/`open_file`,
a spool file in SQLite mode, chunks in Redis so a worker on another host can read it) and small
blobs (the evidence frames).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

from deepfake_api.records import check_record

Doc = dict[str, Any]
Change = Callable[[Doc], Doc | None]
Admit = Callable[[list[Doc]], None]
"""Sees the active jobs inside the create's transaction; raises to refuse the new one."""
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
INDEXED = ("subscription", "alert")  # documents other than jobs kept in the same store (alerts/)
CHUNK = 4 * 1024 * 1024
WORK_COPY = "video-"
"""A worker's local copy of a video it analyses (Redis mode): video-<pid>-<random>."""


class JobStore(Protocol):
    errors: tuple[type[Exception], ...]  # what the store raises when it cannot be reached

    def create(self, doc: Doc, admit: Admit | None = None) -> None: ...
    def get(self, job_id: str) -> Doc | None: ...
    def modify(self, job_id: str, change: Change) -> Doc | None: ...
    def delete(self, job_id: str) -> None: ...
    def active(self) -> list[Doc]: ...
    def by_state(self, state: str) -> list[Doc]: ...  # for the INDEXED states: subscriptions, alerts
    def purge_expired(self) -> int: ...
    def put_file(self, job_id: str, src: Path) -> None: ...
    def open_file(self, job_id: str) -> Any: ...  # a context manager yielding a local Path
    def drop_file(self, job_id: str) -> None: ...
    def put_blob(self, job_id: str, name: str, data: bytes) -> None: ...
    def get_blob(self, job_id: str, name: str) -> bytes | None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _live(doc: Doc | None, now: float) -> Doc | None:
    if doc is None or (doc.get("expires_at") and doc["expires_at"] <= now):
        return None
    return doc


class SqliteStore:
    """One database file in `directory` (WAL, so readers never wait for the worker's writes) and a
    spool folder for uploaded videos; a connection per thread."""

    errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)  # locked too long, disk full or gone

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.spool = self.directory / "spool"
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / "jobs.sqlite3"
        self._local = threading.local()
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs"
                " (id TEXT PRIMARY KEY, state TEXT NOT NULL, expires_at REAL, doc TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS blobs (job_id TEXT, name TEXT, data BLOB, PRIMARY KEY (job_id, name))"
            )

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def create(self, doc: Doc, admit: Admit | None = None) -> None:
        with self._tx() as db:  # IMMEDIATE: no other writer between the count and the insert
            if admit is not None:
                admit(self._active(db))
            check_record(doc)
            db.execute(
                "INSERT INTO jobs (id, state, expires_at, doc) VALUES (?, ?, ?, ?)",
                (doc["id"], doc["state"], doc.get("expires_at"), json.dumps(doc)),
            )

    def get(self, job_id: str) -> Doc | None:
        row = self._db().execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _live(json.loads(row[0]) if row else None, time.time())

    def modify(self, job_id: str, change: Change) -> Doc | None:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
            doc = _live(json.loads(row[0]) if row else None, time.time())
            if doc is None:
                return None
            new = change(dict(doc))
            if new is None:
                return doc
            check_record(new)  # a shape bug fails its writer, not a later reader
            db.execute(
                "UPDATE jobs SET state = ?, expires_at = ?, doc = ? WHERE id = ?",
                (new["state"], new.get("expires_at"), json.dumps(new), job_id),
            )
            return new

    def delete(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM blobs WHERE job_id = ?", (job_id,))
        self.drop_file(job_id)

    def active(self) -> list[Doc]:
        return self._active(self._db())

    def _active(self, db: sqlite3.Connection) -> list[Doc]:
        rows = db.execute(f"SELECT doc FROM jobs WHERE state IN ({', '.join('?' * len(ACTIVE))})", ACTIVE).fetchall()
        now = time.time()  # an expired record is gone, as in Redis, even before the reaper purges it
        return [d for d in (_live(json.loads(r[0]), now) for r in rows) if d is not None]

    def by_state(self, state: str) -> list[Doc]:
        rows = self._db().execute("SELECT doc FROM jobs WHERE state = ?", (state,)).fetchall()
        now = time.time()
        return [d for d in (_live(json.loads(r[0]), now) for r in rows) if d is not None]

    def purge_expired(self) -> int:
        now = time.time()
        with self._tx() as db:
            ids = [
                r[0] for r in db.execute("SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            ]
            for job_id in ids:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                db.execute("DELETE FROM blobs WHERE job_id = ?", (job_id,))
        for job_id in ids:
            self.drop_file(job_id)
        return len(ids)

    def _file(self, job_id: str) -> Path:
        return self.spool / f"{job_id}.video"

    def put_file(self, job_id: str, src: Path) -> None:
        os.replace(src, self._file(job_id))  # the spool is on the same filesystem as the upload's temp file

    @contextmanager
    def open_file(self, job_id: str) -> Iterator[Path | None]:
        path = self._file(job_id)
        yield path if path.is_file() else None

    def drop_file(self, job_id: str) -> None:
        self._file(job_id).unlink(missing_ok=True)

    def put_blob(self, job_id: str, name: str, data: bytes) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO blobs (job_id, name, data) VALUES (?, ?, ?)", (job_id, name, data))

    def get_blob(self, job_id: str, name: str) -> bytes | None:
        if self.get(job_id) is None:
            return None
        row = self._db().execute("SELECT data FROM blobs WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
        return bytes(row[0]) if row else None

    def ping(self) -> None:
        self._db().execute("SELECT 1")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class RedisStore:
    """Keys under `prefix`: the document (with a TTL once finished), a set of active ids, the
    video in chunks (a worker on another host reads it back to a local temp file) and blobs."""

    def __init__(self, url: str, prefix: str = "deepfake:jobs:", spool: Path | None = None) -> None:
        import redis

        self.errors: tuple[type[Exception], ...] = (redis.RedisError,)  # the store cannot be reached
        self.r = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self.prefix = prefix
        self.spool = Path(spool or tempfile.gettempdir())

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _ttl(self, doc: Doc) -> int | None:
        if doc.get("expires_at"):
            return max(1, int(doc["expires_at"] - time.time()) + 1)
        return None

    def _write(self, pipe: Any, doc: Doc) -> None:
        check_record(doc)  # a shape bug fails its writer, not a later reader
        key = self._key("doc", doc["id"])
        pipe.set(key, json.dumps(doc), ex=self._ttl(doc))
        if doc["state"] in INDEXED:
            pipe.sadd(self._key("state", doc["state"]), doc["id"])
        if doc["state"] in ACTIVE:
            pipe.sadd(self._key("active"), doc["id"])
            ttl = self._ttl(doc)  # an admitted job not yet queued expires with its video
            pipe.expire(self._key("file", doc["id"]), ttl) if ttl else pipe.persist(self._key("file", doc["id"]))
        else:
            pipe.srem(self._key("active"), doc["id"])
            ttl = self._ttl(doc)
            if ttl:
                for blob in (self._key("blobs", doc["id"]), self._key("file", doc["id"])):
                    pipe.expire(blob, ttl)

    def create(self, doc: Doc, admit: Admit | None = None) -> None:
        if admit is None:
            pipe = self.r.pipeline()
            self._write(pipe, doc)
            pipe.execute()
            return

        def attempt(pipe: Any) -> None:  # WATCHing the active set: a concurrent admission retries
            admit(self._active(pipe))
            pipe.multi()
            self._write(pipe, doc)

        self.r.transaction(attempt, self._key("active"))

    def get(self, job_id: str) -> Doc | None:
        raw = self.r.get(self._key("doc", job_id))
        return _live(json.loads(raw) if raw else None, time.time())

    def modify(self, job_id: str, change: Change) -> Doc | None:
        key = self._key("doc", job_id)
        out: list[Doc | None] = [None]

        def attempt(pipe: Any) -> None:
            raw = pipe.get(key)
            doc = _live(json.loads(raw) if raw else None, time.time())
            out[0] = doc
            if doc is None:
                pipe.multi()
                return
            new = change(dict(doc))
            pipe.multi()
            if new is not None:
                self._write(pipe, new)
                out[0] = new

        self.r.transaction(attempt, key)
        return out[0]

    def delete(self, job_id: str) -> None:
        self.r.delete(self._key("doc", job_id), self._key("blobs", job_id), self._key("file", job_id))
        self.r.srem(self._key("active"), job_id)
        for state in INDEXED:
            self.r.srem(self._key("state", state), job_id)

    def by_state(self, state: str) -> list[Doc]:
        key = self._key("state", state)
        docs = []
        for doc_id in sorted(cast(bytes, i).decode() for i in self.r.smembers(key)):
            doc = self.get(doc_id)
            if doc is None:
                self.r.srem(key, doc_id)  # expired
            elif doc["state"] == state:
                docs.append(doc)
        return docs

    def active(self) -> list[Doc]:
        docs = self._active(self.r)
        return docs

    def _active(self, r: Any) -> list[Doc]:
        ids = sorted(cast(bytes, i).decode() for i in r.smembers(self._key("active")))
        docs, gone = [], []
        now = time.time()
        for job_id in ids:
            raw = r.get(self._key("doc", job_id))
            doc = _live(json.loads(raw) if raw else None, now)
            if doc is None:
                gone.append(job_id)
            elif doc["state"] in ACTIVE:
                docs.append(doc)
        if gone and r is self.r:  # expired or deleted (not inside a WATCH: that would void it)
            self.r.srem(self._key("active"), *gone)
        return docs

    def purge_expired(self) -> int:
        return 0  # Redis expires keys itself

    def put_file(self, job_id: str, src: Path) -> None:
        key = self._key("file", job_id)
        self.r.delete(key)
        with open(src, "rb") as fh:
            while chunk := fh.read(CHUNK):
                self.r.append(key, chunk)
        ttl = int(self.r.ttl(self._key("doc", job_id)))
        if ttl > 0:  # the job is not queued for good yet: its video goes with it if it never is
            self.r.expire(key, ttl)
        Path(src).unlink(missing_ok=True)

    @contextmanager
    def open_file(self, job_id: str) -> Iterator[Path | None]:
        key = self._key("file", job_id)
        size = int(self.r.strlen(key))
        if size == 0:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix=f"{WORK_COPY}{os.getpid()}-", dir=self.spool)
        try:
            with os.fdopen(fd, "wb") as fh:
                for start in range(0, size, CHUNK):
                    fh.write(cast(bytes, self.r.getrange(key, start, min(size, start + CHUNK) - 1)))
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def drop_file(self, job_id: str) -> None:
        self.r.delete(self._key("file", job_id))

    def put_blob(self, job_id: str, name: str, data: bytes) -> None:
        self.r.hset(self._key("blobs", job_id), name, data)

    def get_blob(self, job_id: str, name: str) -> bytes | None:
        if self.get(job_id) is None:
            return None
        data = self.r.hget(self._key("blobs", job_id), name)
        return bytes(cast(bytes, data)) if data is not None else None

    def ping(self) -> None:
        self.r.ping()

    def close(self) -> None:
        self.r.close()


def spool_file(directory: Path) -> tuple[int, Path]:
    """A private temp file in the spool for an upload in progress (random name, mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
    return fd, Path(name)


def clear_partial_uploads(directory: Path) -> None:
    """Uploads cut off by a crash leave their .part files: nobody will finish them. A worker killed
    mid-job leaves its copy of the video: removed unless its process still runs (another worker
    on this host); this process has none yet (a restarted container may reuse its pid)."""
    for stale in Path(directory).glob("upload-*.part"):
        stale.unlink(missing_ok=True)
    for copy in Path(directory).glob(WORK_COPY + "*"):
        pid = copy.name.removeprefix(WORK_COPY).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or not _running(int(pid)):
            copy.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


__all__ = ["ACTIVE", "FINAL", "JobStore", "RedisStore", "SqliteStore", "clear_partial_uploads", "spool_file"]
