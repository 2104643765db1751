"""The face tracker on synthetic detections: faces that move further than their own width between
sampled frames, cross, vanish for a frame, and enter; and the assignment it rests on."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from deepfake_api import faces
from deepfake_api.tracking import Detection, Tracker, appearance, assign_min_cost, detections, iou

SIDE = 100.0  # face box side in pixels


def face_crop(identity: int, frame: int = 0) -> np.ndarray:
    """A stand-in for an aligned face crop: a smooth colour pattern of its own per identity, with a
    little noise and brightness change per frame (as compression and light give a real face)."""
    rng = np.random.default_rng(identity)
    base = rng.uniform(40, 215, size=(6, 6, 3))
    crop = np.kron(base, np.ones((38, 38, 1)))[: faces.CROP_SIZE, : faces.CROP_SIZE]
    noise = np.random.default_rng(1000 * identity + frame).normal(0, 6, crop.shape)
    return np.clip(crop * (1 + 0.03 * math.sin(frame)) + noise, 0, 255).astype(np.uint8)


def det(cx: float, cy: float, identity: int | None = None, frame: int = 0, side: float = SIDE) -> Detection:
    """A face centred at (cx, cy), with five landmarks where YuNet would put them."""
    box = (cx - side / 2, cy - side / 2, side, side)
    s = side / 112.0
    marks = tuple((cx + (px - 56) * s, cy + (py - 64) * s) for px, py in faces._ARCFACE_112)
    look = None if identity is None else appearance(face_crop(identity, frame))
    return Detection(box, marks, look)


def run(tracker: Tracker, frames: list[list[Detection]]) -> list[list[int]]:
    return [tracker.assign(i, dets) for i, dets in enumerate(frames)]


def test_a_face_moving_more_than_its_width_per_frame_keeps_its_track() -> None:
    # 1.3 face widths per sampled frame, drifting down: boxes of consecutive frames never overlap.
    path = [(100 + 130 * i, 200 + 20 * i) for i in range(8)]
    frames = [[det(x, y, identity=1, frame=i)] for i, (x, y) in enumerate(path)]
    assert all(iou(a[0].box, b[0].box) == 0 for a, b in itertools.pairwise(frames))  # box overlap would lose it
    ids = run(Tracker(), frames)
    assert len({i[0] for i in ids}) == 1


def test_landmarks_alone_follow_a_moving_face_without_appearance() -> None:
    frames = [[det(100 + 120 * i, 300)] for i in range(6)]
    assert len({i[0] for i in run(Tracker(), frames)}) == 1


def test_a_jump_beyond_the_motion_gate_starts_a_new_track() -> None:
    frames = [[det(100, 300, 1, 0)], [det(100 + 5 * SIDE, 300, 1, 1)]]
    ids = run(Tracker(), frames)
    assert ids[0] != ids[1]


def test_two_faces_crossing_keep_their_identities() -> None:
    # A moves right, B moves left on nearly the same line; at frame 3 they are side by side, then pass.
    frames = []
    for i in range(7):
        a = det(100 + 110 * i, 300, identity=1, frame=i)
        b = det(760 - 110 * i, 320, identity=2, frame=i)
        frames.append([b, a] if i % 2 else [a, b])  # detection order says nothing
    ids = run(Tracker(), frames)
    track_a = {ids[i][1 if i % 2 else 0] for i in range(7)}
    track_b = {ids[i][0 if i % 2 else 1] for i in range(7)}
    assert len(track_a) == 1 and len(track_b) == 1 and track_a != track_b


def test_crossing_with_one_face_hidden_at_the_crossing() -> None:
    # At frame 3 the faces overlap and the detector sees only B; A reappears beyond it.
    frames = []
    for i in range(7):
        a = det(100 + 110 * i, 300, identity=1, frame=i)
        b = det(760 - 110 * i, 300, identity=2, frame=i)
        frames.append([b] if i == 3 else [a, b])
    ids = run(Tracker(), frames)
    a_ids = {ids[i][0] for i in range(7) if i != 3}
    b_ids = {ids[i][-1] for i in range(7)}
    assert len(a_ids) == 1 and len(b_ids) == 1 and a_ids != b_ids


def test_a_face_occluded_for_a_frame_continues_its_track() -> None:
    frames = [[det(200 + 60 * i, 300, 1, i)] if i != 3 else [] for i in range(7)]
    ids = run(Tracker(), frames)
    assert len({i[0] for i in ids if i}) == 1


def test_a_face_gone_longer_than_max_missed_is_a_new_track() -> None:
    tracker = Tracker(max_missed=2)
    frames = [[det(300, 300, 1, i)] if i in (0, 1, 5) else [] for i in range(6)]
    ids = run(tracker, frames)
    assert ids[0] == ids[1] and ids[5] != ids[0]


def test_a_new_face_entering_gets_a_new_track_and_the_others_keep_theirs() -> None:
    frames = []
    for i in range(6):
        dets = [det(200 + 50 * i, 200, 1, i), det(600, 400 - 40 * i, 2, i)]
        if i >= 3:
            dets.append(det(1100 - 80 * (i - 3), 250, 3, i))
        frames.append(dets)
    ids = run(Tracker(), frames)
    assert {f[0] for f in ids} == {ids[0][0]} and {f[1] for f in ids} == {ids[0][1]}
    assert {f[2] for f in ids[3:]} == {ids[3][2]}
    assert len({ids[0][0], ids[0][1], ids[3][2]}) == 3


def test_another_person_in_the_same_place_is_not_the_same_track() -> None:
    # A cut: a different face where the last one was, same size.
    frames = [[det(400, 300, 1, 0)], [det(400, 300, 1, 1)], [det(410, 300, 7, 2)]]
    ids = run(Tracker(), frames)
    assert ids[0] == ids[1] != ids[2]


def test_appearance_tells_the_same_face_from_another() -> None:
    same = appearance(face_crop(3, 0)).similarity(appearance(face_crop(3, 5)))
    other = appearance(face_crop(3, 0)).similarity(appearance(face_crop(4, 0)))
    assert same > Tracker().min_similarity > other


def test_detections_read_the_judged_crop_and_align_the_others() -> None:
    rgb = np.zeros((400, 600, 3), np.uint8)
    rgb[100:300, 200:400] = face_crop(5)[:200, :200]
    d = det(300, 200, side=120)
    face = faces.Face(d.box, d.landmarks or (), 0.9)
    judged = faces.FaceCandidate(face, "judged", face_crop(9))
    small = faces.FaceCandidate(face, "too_small")
    out = detections([judged, small], rgb)
    assert [o.box for o in out] == [face.box, face.box]
    assert out[0].look is not None and out[1].look is not None
    assert out[0].look.similarity(appearance(face_crop(9))) == pytest.approx(1.0)
    assert out[1].look.similarity(appearance(faces.align_face(rgb, face))) == pytest.approx(1.0)


def _brute(cost: np.ndarray) -> tuple[int, float]:
    """Most allowed pairs, then least cost, by trying every assignment."""
    n, m = cost.shape
    best = (-1, math.inf)
    small, large = (n, m) if n <= m else (m, n)
    c = cost if n <= m else cost.T
    for perm in itertools.permutations(range(large), small):
        pairs = [(i, j) for i, j in enumerate(perm) if c[i, j] < 1e9]
        key = (len(pairs), sum(c[i, j] for i, j in pairs))
        if key[0] > best[0] or (key[0] == best[0] and key[1] < best[1] - 1e-9):
            best = key
    return best


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (4, 4), (5, 3), (3, 6)])
def test_assignment_is_the_cheapest_with_the_most_allowed_links(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.uniform(0, 1, shape)
        cost[rng.uniform(size=shape) < 0.35] = 1e9
        pairs = assign_min_cost(cost)
        assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
        assert all(cost[r, c] < 1e9 for r, c in pairs)
        n, total = _brute(cost)
        assert len(pairs) == n and sum(cost[r, c] for r, c in pairs) == pytest.approx(total)


def test_assignment_of_nothing() -> None:
    assert assign_min_cost(np.zeros((0, 3))) == [] and assign_min_cost(np.zeros((2, 0))) == []
