"""Property-based fuzzing of POST /videos through the real app, queue, decoder and model.

Whatever arrives, the upload is answered 202/200 with a job or a 4xx problem+json, never a 5xx;
and every accepted job ends (`done` or `failed` with a stable problem type), never stuck. The
inputs: random bytes behind each container's magic, real short clips in every container and
codec, and those clips truncated, bit-flipped, with bytes deleted, duplicated or zeroed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfake_api.errors import PROBLEM_BASE
from deepfake_api.schemas import Job
from tests.jobs.test_videos import wait_done
from tests.utils.apps import serving
from tests.utils.images import noise_rgb
from tests.utils.videos import write_video

EXAMPLES = 20 if os.environ.get("DEEPFAKE_FUZZ_PROFILE") == "fuzz-quick" else 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
CODECS = [("mp4", "libx264"), ("mov", "libx264"), ("webm", "libvpx"), ("matroska", "libx264"), ("avi", "mpeg4")]
MAGIC = [
    b"\x00\x00\x00\x18ftypisom",
    b"\x00\x00\x00\x14ftypqt  ",
    b"\x1a\x45\xdf\xa3",
    b"RIFF\x00\x00\x00\x00AVI LIST",
]
UPLOAD_STATUSES = {400, 413, 415, 422}
JOB_FAILURES = {"invalid-video", "no-video-stream", "video-too-small", "video-too-large", "video-too-long"}


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serving(jobs_dir=tmp_path_factory.mktemp("fuzz-jobs"), jobs_max_per_client=64) as client:
        yield client


@st.composite
def clips(draw: st.DrawFn) -> bytes:
    fmt, codec = draw(st.sampled_from(CODECS))
    width, height = 2 * draw(st.integers(16, 64)), 2 * draw(st.integers(16, 64))
    seed = draw(st.integers(0, 999))
    frames = [noise_rgb(width, height, seed=seed + i) for i in range(draw(st.integers(1, 8)))]
    return write_video(frames, fps=draw(st.sampled_from([1, 4, 30])), fmt=fmt, codec=codec)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(clips()))
    # Every draw is made whatever the bytes are: encoders' output sizes vary run to run, and
    # hypothesis wants the same draws for the same choices. Positions are shares of the length.
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "truncate", "delete", "duplicate", "zero"]),
                st.integers(0, 9_999),
                st.integers(0, 7),
                st.integers(1, 256),
            ),
            min_size=1,
            max_size=6,
        )
    )
    for op, share, bit, n in edits:
        if len(data) < 16:
            break
        at = share * (len(data) - 1) // 9_999
        if op == "flip":
            data[at] ^= 1 << bit
        elif op == "truncate":
            del data[max(at, 12) :]
        elif op == "delete":
            del data[at : at + n]
        elif op == "duplicate":
            data[at:at] = data[at : at + n]
        else:
            data[at : at + 16] = b"\0" * len(data[at : at + 16])
    return bytes(data)


def check(client: TestClient, r: httpx.Response) -> None:
    """A job that ends, or a 4xx problem+json: never a 5xx, never a stack trace, never stuck."""
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert "Traceback" not in r.text and "/tmp" not in r.text
    if r.status_code in (200, 202):
        job = Job.model_validate(r.json())
        end = wait_done(client, job.id, timeout=120)
        assert end["state"] in ("done", "failed"), end
        if end["state"] == "failed":
            assert end["problem"]["type"].removeprefix(PROBLEM_BASE) in JOB_FAILURES, end["problem"]
        else:
            assert end["result"]["label"] in ("real", "fake", "uncertain", "no_face"), end
        return
    assert r.status_code in UPLOAD_STATUSES, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].startswith(PROBLEM_BASE) and body["status"] == r.status_code
    assert body["instance"] == "/videos"


def test_random_bytes_behind_container_magic(fuzz_client: TestClient) -> None:
    @FUZZ
    @given(prefix=st.sampled_from([b"", *MAGIC]), data=st.binary(max_size=4096))
    def run(prefix: bytes, data: bytes) -> None:
        check(fuzz_client, fuzz_client.post("/videos", files={"file": ("v.mp4", prefix + data)}))

    run()


def test_real_clips_of_every_container(fuzz_client: TestClient) -> None:
    @FUZZ
    @given(data=clips())
    def run(data: bytes) -> None:
        r = fuzz_client.post("/videos?wait=30", files={"file": ("v", data)})
        check(fuzz_client, r)
        assert r.status_code in (200, 202), r.text  # a real clip is always accepted
        assert wait_done(fuzz_client, r.json()["id"])["state"] == "done"

    run()


def test_mutated_clips(fuzz_client: TestClient) -> None:
    @FUZZ
    @given(data=mutated())
    def run(data: bytes) -> None:
        check(fuzz_client, fuzz_client.post("/videos", files={"file": ("v.mkv", data, "video/x-matroska")}))

    run()
