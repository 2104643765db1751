"""Clip verdicts through the real app, queue and model, on made 720p clips whose truth is known.

Faces move on circles by more than their own width between sampled frames (box overlap would
lose every one of them). The faces are chosen at test time by what the served model says of them
as still images through /predict, so these tests check the tracking and the clip rule, not a
score: genuine faces it does not call fake (held-out: the test split, or sources the model never
trained on), and swapped faces it does call fake."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from deepfake_api.tracking import iou
from tests.conftest import DATASET_DIR, ROOT
from tests.jobs.test_videos import wait_done
from tests.utils.apps import serving
from tests.utils.videos import write_video

pytestmark = pytest.mark.dataset

SIZE = (1280, 720)
FPS = 2  # the default sampling rate: every frame of the clip is a sampled frame
N_FRAMES = 8
FACE = 100  # face box side (pixels) of the large faces
SMALL = 50  # judged (>= 40 px) but too small to decide the clip
SLOTS = [(220, 190), (640, 190), (1060, 190), (220, 530), (640, 530), (1060, 530)]
RADIUS, STEP = 75, math.radians(100)  # 2·75·sin(50°) ≈ 115 px a frame: more than a face's width
REAL_SOURCES = ("utkface", "lfw-faceswap")
FAKE_SOURCES = ("lfw-faceswap", "celebahq-pairs")
POOL = 16  # fakes scanned at most


@dataclass(frozen=True)
class Tile:
    image: Image.Image
    face: tuple[float, float, float, float]  # x, y, w, h of its face in the tile, as /predict found it
    score: float
    label: str
    file: str


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serving(jobs_dir=tmp_path_factory.mktemp("jobs"), video_sample_fps=float(FPS), max_faces=8) as c:
        yield c


@cache
def _held_out(label: str, sources: tuple[str, ...]) -> list[str]:
    """Dataset files of `label` from `sources` the model did not train on: the test split, or a
    source the split does not list (one the model never saw), taken in turn from each source."""
    manifest = DATASET_DIR / "MANIFEST.csv"
    if not manifest.is_file():
        pytest.skip(f"no dataset at {DATASET_DIR}")
    split_file = ROOT / "reports" / "data" / "split.csv"
    split = {}
    if split_file.is_file():
        with split_file.open(newline="") as fh:
            split = {r["file"]: r["split"] for r in csv.DictReader(fh)}
    listed = {f.split("/", 1)[0] for f in split}
    by_source: dict[str, list[str]] = {s: [] for s in sources}
    with manifest.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["label"] == label and r["dataset"] in by_source:
                if split.get(r["file"]) == "test" or r["dataset"] not in listed:
                    by_source[r["dataset"]].append(r["file"])
    return [f for group in zip(*by_source.values(), strict=False) for f in group]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _judge(client: TestClient, img: Image.Image) -> dict | None:
    body = client.post("/predict", files={"file": ("t.png", _png(img))}).json()
    faces = body.get("faces") or []
    return faces[0] if len(faces) == 1 and faces[0]["status"] == "judged" else None


def tile(client: TestClient, file: str, face_side: int) -> Tile | None:
    """The image scaled so its face is about `face_side` px, and what /predict says of it at that size."""
    img = Image.open(DATASET_DIR / file).convert("RGB")
    first = _judge(client, img)
    if first is None:
        return None
    scale = face_side / max(first["box"]["width"], first["box"]["height"])
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    face = _judge(client, img)
    if face is None:
        return None
    b = face["box"]
    return Tile(img, (b["x"], b["y"], b["width"], b["height"]), face["score"], face["label"], file)


def reals(client: TestClient, n: int, face_side: int, skip: int = 0) -> list[Tile]:
    out = []
    for file in _held_out("real", REAL_SOURCES)[skip:]:
        t = tile(client, file, face_side)
        if t is not None and t.label != "fake":
            out.append(t)
            if len(out) == n:
                return out
    pytest.fail(f"fewer than {n} held-out genuine faces the model does not call fake")


@pytest.fixture(scope="module")
def swapped(client: TestClient) -> Tile:
    """The fake face: among up to POOL held-out swaps, the one the served model is surest is fake."""
    called = []
    for file in _held_out("fake", FAKE_SOURCES)[:POOL]:
        t = tile(client, file, FACE)
        if t is not None and t.label == "fake":
            called.append(t)
    if not called:
        pytest.skip(f"the served model calls none of {POOL} held-out swapped faces fake as a still image")
    return max(called, key=lambda t: t.score)


def centre_at(i: int, slot: int) -> tuple[float, float]:
    """Where face `slot` is centred in frame i: on its own circle, half of them turning the other way."""
    sx, sy = SLOTS[slot]
    a = slot * 1.3 + (STEP if slot % 2 == 0 else -STEP) * i
    return (sx + RADIUS * math.cos(a), sy + RADIUS * math.sin(a))


def paste(canvas: Image.Image, t: Tile, centre: tuple[float, float]) -> None:
    fx, fy, fw, fh = t.face
    canvas.paste(t.image, (round(centre[0] - fx - fw / 2), round(centre[1] - fy - fh / 2)))


def make_clip(placed: list[tuple[Tile, list[tuple[float, float] | None]]]) -> bytes:
    """placed: each tile with its face centre in every frame (None: not in that frame)."""
    frames = []
    for i in range(N_FRAMES):
        canvas = Image.new("RGB", SIZE, (120, 120, 120))
        for t, path in placed:
            if path[i] is not None:
                paste(canvas, t, path[i])
        frames.append(canvas)
    return write_video([np.asarray(f) for f in frames], fps=FPS, crf=14)


def analyse(client: TestClient, data: bytes) -> dict:
    r = client.post("/videos", files={"file": ("clip.mp4", data)})
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"], timeout=600)
    assert job["state"] == "done", job
    assert job["result"]["sampling"]["frames_analysed"] == N_FRAMES
    return job["result"]


def identify(result: dict, paths: list[list[tuple[float, float] | None]]) -> dict[int, list[tuple[int, dict]]]:
    """Which placed face each detected face is (its centre within half a face of where it was put):
    placed index -> [(frame index, face)]."""
    out: dict[int, list[tuple[int, dict]]] = {}
    for frame in result["frames"]:
        for face in frame["faces"]:
            b = face["box"]
            cx, cy = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
            near = [
                (math.hypot(cx - p[frame["index"]][0], cy - p[frame["index"]][1]), k)
                for k, p in enumerate(paths)
                if p[frame["index"]] is not None
            ]
            d, k = min(near)
            if d < 0.5 * max(b["width"], b["height"]):
                out.setdefault(k, []).append((frame["index"], face))
    return out


def one_track(seen: list[tuple[int, dict]]) -> int:
    ids = {face["track"] for _, face in seen}
    assert len(ids) == 1, f"one face split into tracks {ids}"
    return ids.pop()


def assert_moves_beyond_box_overlap(seen: list[tuple[int, dict]]) -> None:
    boxes = [tuple(face["box"][k] for k in ("x", "y", "width", "height")) for _, face in seen]
    assert max(iou(a, b) for a, b in zip(boxes, boxes[1:], strict=False)) < 0.3  # the old tracker's gate


def test_a_crowd_of_genuine_faces_is_not_called_fake(client: TestClient) -> None:
    big = reals(client, 4, FACE)
    small = reals(client, 2, SMALL, skip=8)
    glimpse = reals(client, 1, FACE, skip=16)
    moving = [[centre_at(i, slot) for i in range(N_FRAMES)] for slot in range(4)]
    sx, sy = SLOTS[4]
    small_paths = [[(sx - 60 + 8 * (i % 2), sy - 40) for i in range(N_FRAMES)], [(sx + 60, sy + 50)] * N_FRAMES]
    glimpse_path = [SLOTS[5] if i == 4 else None for i in range(N_FRAMES)]
    placed = [*zip(big, moving, strict=True), *zip(small, small_paths, strict=True), (glimpse[0], glimpse_path)]
    result = analyse(client, make_clip(placed))  # type: ignore[arg-type]

    assert result["label"] != "fake", result["reason"]
    tracks = {t["id"]: t for t in result["tracks"]}
    seen = identify(result, [p for _, p in placed])
    big_tracks = set()
    for k in range(4):
        assert len(seen.get(k, [])) >= N_FRAMES - 1, f"face {k} found in too few frames"
        assert_moves_beyond_box_overlap(seen[k])
        tid = one_track(seen[k])
        big_tracks.add(tid)
        assert tracks[tid]["eligible"] and tracks[tid]["label"] != "fake"
    assert len(big_tracks) == 4
    judged_small = [one_track(seen[k]) for k in (4, 5) if seen.get(k)]
    assert judged_small, "no small face was found"
    for tid in judged_small:
        if tid in tracks:  # judged (not only too_small)
            assert tracks[tid]["eligible"] is False and "px" in tracks[tid]["not_eligible"]
    assert len(seen.get(6, [])) == 1
    g = one_track(seen[6])
    assert g not in big_tracks and tracks[g]["frames"] == 1 and tracks[g]["eligible"] is False
    assert result["clip_rule"]["eligible_tracks"] == 4


def _fake_among_reals(client: TestClient, swapped: Tile, fake_frames: set[int]) -> tuple[dict, int, list[int]]:
    others = reals(client, 3, FACE)
    paths = [[centre_at(i, slot) for i in range(N_FRAMES)] for slot in range(4)]
    fake_path = [p if i in fake_frames else None for i, p in enumerate(paths[3])]
    placed = [*zip(others, paths[:3], strict=True), (swapped, fake_path)]
    result = analyse(client, make_clip(placed))  # type: ignore[arg-type]
    seen = identify(result, [p for _, p in placed])
    real_ids = [one_track(seen[k]) for k in range(3)]
    return result, one_track(seen[3]), real_ids


def test_one_swapped_face_among_genuine_ones_makes_the_clip_fake(client: TestClient, swapped: Tile) -> None:
    result, fake_id, real_ids = _fake_among_reals(client, swapped, set(range(N_FRAMES)))
    tracks = {t["id"]: t for t in result["tracks"]}
    threshold = result["clip_rule"]["fake_threshold"]
    if swapped.score < threshold:
        pytest.skip(
            f"the surest fake of the pool ({swapped.file}) scores {swapped.score:.3f} as a still, below the "
            f"{threshold:.3f} a clip with {result['clip_rule']['eligible_tracks']} faces asks: "
            "no clip of it can be fake"
        )
    assert len({fake_id, *real_ids}) == 4
    assert tracks[fake_id]["eligible"] and tracks[fake_id]["frames"] >= N_FRAMES - 1
    assert result["label"] == "fake", result["reason"]
    assert f"track {fake_id}" in result["reason"] and result["score"] == tracks[fake_id]["score"] >= threshold
    assert all(tracks[r]["score"] < threshold for r in real_ids)  # decided by the swapped face, not another


def test_the_same_swapped_face_in_one_frame_cannot_make_the_clip_fake(client: TestClient, swapped: Tile) -> None:
    result, fake_id, real_ids = _fake_among_reals(client, swapped, {4})
    tracks = {t["id"]: t for t in result["tracks"]}
    assert tracks[fake_id]["frames"] == 1 and tracks[fake_id]["eligible"] is False
    assert all(tracks[r]["eligible"] for r in real_ids)
    assert result["label"] != "fake", result["reason"]
