"""From per-face scores to track and clip verdicts (video.aggregate), on made frames.

Scores are placed relative to the decision band under test (the committed card's, and others):
nothing here depends on where the band is today."""

from __future__ import annotations

from typing import Any

import pytest

from deepfake_api.model import Decision, read_card
from deepfake_api.video import CLIP_RULE, ClipRule, aggregate
from tests.conftest import MODEL_PATH

BANDS = [Decision(0.5, 0.03, 0.88), Decision(0.5, 0.2, 0.6), Decision(0.5, 0.45, 0.55)]


def _card_decision() -> Decision:
    try:
        return Decision.from_card(read_card(MODEL_PATH))
    except Exception:  # no committed model here: the other bands still run
        return BANDS[0]


@pytest.fixture(params=[*BANDS, "card"], ids=lambda d: "card" if d == "card" else f"band-{d.band_low}-{d.band_high}")
def decision(request: pytest.FixtureRequest) -> Decision:
    return _card_decision() if request.param == "card" else request.param


def real(d: Decision) -> float:
    return d.band_low / 2


def fake(d: Decision, k: int = 1) -> float:
    """Above what a track needs to make the clip fake with k tracks that may decide, with or without Bonferroni."""
    t = ClipRule(bonferroni=True).fake_threshold(d, k)
    return t + (1 - t) / 2


def frames_of(tracks: dict[int, dict[int, float]], n: int, side: float = 120.0, sides: dict[int, float] | None = None):
    """n sampled frames; tracks: id -> {frame index: score}."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        faces = []
        for tid, scores in tracks.items():
            if i in scores:
                s = (sides or {}).get(tid, side)
                faces.append(
                    {
                        "track": tid,
                        "status": "judged",
                        "box": {"x": 10.0 * tid, "y": 0.0, "width": s, "height": s * 1.2},
                        "score": scores[i],
                        "label": None,
                    }
                )
        out.append({"index": i, "time_s": i * 0.5, "faces": faces})
    return out


def labelled(frames: list[dict[str, Any]], d: Decision) -> list[dict[str, Any]]:
    for f in frames:
        for face in f["faces"]:
            face["label"] = d.label(face["score"])
    return frames


def by_id(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {t["id"]: t for t in result["tracks"]}


def test_a_face_seen_in_one_sampled_frame_cannot_decide_the_clip(decision: Decision) -> None:
    # Track 0: a real face in every frame. Track 1: a face judged in a single frame, as fake as can be.
    frames = labelled(frames_of({0: dict.fromkeys(range(8), real(decision)), 1: {4: 0.9999}}, 8), decision)
    result = aggregate(frames, decision)
    t = by_id(result)
    assert t[1]["label"] == "fake" and t[1]["frames"] == 1  # reported as it looked...
    assert t[1]["eligible"] is False and "1 sampled frame" in t[1]["not_eligible"]  # ...but it may not decide
    assert t[0]["eligible"] is True
    assert result["label"] == "uncertain"  # not fake; and not real either, with a fake-looking face in it
    assert "track 1" in result["reason"]
    assert result["clip_rule"]["eligible_tracks"] == 1


def test_many_single_frame_tracks_do_not_add_up_to_a_fake(decision: Decision) -> None:
    # The dance clip: a crowd of faces each judged once (fake-looking), one face followed throughout.
    tracks = {0: dict.fromkeys(range(10), real(decision))}
    tracks.update({tid: {tid % 10: 0.9999} for tid in range(1, 9)})
    result = aggregate(labelled(frames_of(tracks, 10), decision), decision)
    assert result["label"] != "fake"
    assert result["clip_rule"]["eligible_tracks"] == 1


def test_a_face_judged_in_enough_frames_decides(decision: Decision) -> None:
    n = CLIP_RULE.min_frames
    frames = labelled(frames_of({0: dict.fromkeys(range(n), fake(decision))}, n), decision)
    result = aggregate(frames, decision)
    assert result["label"] == "fake" and by_id(result)[0]["eligible"] is True
    assert result["score"] == by_id(result)[0]["score"]


def test_a_small_face_cannot_decide_however_long(decision: Decision) -> None:
    side = CLIP_RULE.min_face_side - 10
    frames = labelled(frames_of({0: dict.fromkeys(range(12), 0.9999)}, 12, side=side), decision)
    result = aggregate(frames, decision)
    t = by_id(result)[0]
    assert t["eligible"] is False and "px" in t["not_eligible"] and t["face_side"] == pytest.approx(side)
    assert result["label"] == "uncertain" and result["score"] == t["score"]


def test_one_odd_frame_does_not_move_a_track(decision: Decision) -> None:
    scores = dict.fromkeys(range(7), real(decision))
    scores[3] = 0.9999
    result = aggregate(labelled(frames_of({0: scores}, 7), decision), decision)
    t = by_id(result)[0]
    assert t["label"] == "real" and t["max_score"] == 0.9999 and t["mean_score"] > t["score"]
    assert t["fake_frames"] == [3]
    assert result["label"] == "real"


def test_with_bonferroni_more_faces_need_stronger_evidence(decision: Decision) -> None:
    # A score enough for one face is not enough for one of five: five chances to be wrong.
    rule = ClipRule(bonferroni=True)
    single = fake(decision, 1)
    for k in (1, 5):
        tracks = {0: dict.fromkeys(range(6), single)}
        tracks.update({tid: dict.fromkeys(range(6), real(decision)) for tid in range(1, k)})
        result = aggregate(labelled(frames_of(tracks, 6), decision), decision, rule=rule)
        assert result["clip_rule"]["eligible_tracks"] == k and result["clip_rule"]["bonferroni"] is True
        threshold = result["clip_rule"]["fake_threshold"]
        assert threshold == pytest.approx(1 - (1 - decision.band_high) / k, abs=1e-6)
        if single >= threshold:
            assert result["label"] == "fake" and "track 0" in result["reason"]
        else:
            assert result["label"] == "uncertain" and "below" in result["reason"]
    assert rule.fake_threshold(decision, 5) > single  # the case above did happen


def test_by_default_each_deciding_face_is_held_to_the_cards_threshold(decision: Decision) -> None:
    assert CLIP_RULE.bonferroni is False
    assert CLIP_RULE.fake_threshold(decision, 1) == CLIP_RULE.fake_threshold(decision, 9) == decision.band_high
    below = decision.band_high - (decision.band_high - decision.band_low) / 4
    tracks = {tid: dict.fromkeys(range(6), real(decision)) for tid in range(4)}
    tracks[7] = dict.fromkeys(range(6), below)
    result = aggregate(labelled(frames_of(tracks, 6), decision), decision)
    assert result["label"] == "uncertain" and result["clip_rule"]["fake_threshold"] == decision.band_high


def test_one_fake_face_among_real_ones_decides_when_strong_enough(decision: Decision) -> None:
    k = 6
    tracks = {tid: dict.fromkeys(range(8), real(decision)) for tid in range(k - 1)}
    tracks[9] = dict.fromkeys(range(2, 8), fake(decision, k))
    result = aggregate(labelled(frames_of(tracks, 8), decision), decision)
    assert result["label"] == "fake" and "track 9" in result["reason"]
    assert result["score"] == by_id(result)[9]["score"]
    assert result["top_frames"][0]["track"] == 9


def test_real_needs_every_deciding_track_real(decision: Decision) -> None:
    base = {0: dict.fromkeys(range(6), real(decision)), 1: dict.fromkeys(range(6), real(decision))}
    assert aggregate(labelled(frames_of(base, 6), decision), decision)["label"] == "real"
    middle = (decision.band_low + decision.band_high) / 2
    mixed = {**base, 1: dict.fromkeys(range(6), middle)}
    assert aggregate(labelled(frames_of(mixed, 6), decision), decision)["label"] == "uncertain"


def test_no_face() -> None:
    d = BANDS[0]
    result = aggregate([{"index": 0, "time_s": 0.0, "faces": []}], d)
    assert result["label"] == "no_face" and result["score"] is None and result["tracks"] == []


def test_the_result_keeps_its_old_fields() -> None:
    d = BANDS[0]
    result = aggregate(labelled(frames_of({0: dict.fromkeys(range(4), 0.5)}, 4), d), d)
    assert {"label", "score", "tracks", "top_frames"} <= result.keys()
    old = {"id", "label", "score", "max_score", "frames", "first_time_s", "last_time_s", "fake_frames"}
    new = {"mean_score", "face_side", "eligible", "not_eligible"}
    assert result["tracks"][0].keys() == old | new


def test_the_rule_can_be_set() -> None:
    d = BANDS[1]
    frames = labelled(frames_of({0: dict.fromkeys(range(2), 0.99)}, 2), d)
    assert aggregate(frames, d)["label"] == "uncertain"
    assert aggregate(frames, d, rule=ClipRule(min_frames=2))["label"] == "fake"
