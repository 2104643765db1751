"""Videos: container sniffing, header checks, frame sampling, face tracks and the verdict over time.

Decoding is PyAV's (its wheel carries FFmpeg). `probe` reads only the container header and
refuses what is not a video we analyse (type from the bytes, no video stream, frames too small or
too large, too long) before a single frame is decoded. `sample_frames` decodes in order and keeps
frames at the sampling times (variable frame rates included: times come from each frame's pts),
upright (the display-matrix rotation of phone videos applied), with the decoder itself capped at
the pixel limit in case the header understated the frame size. `Tracker` (tracking.py) links
faces across sampled frames by where they are going, their size and their look; `aggregate`
turns per-face scores into per-track verdicts and the clip's (`ClipRule`: only tracks judged in
enough frames, on faces large enough, decide, each by the median over its frames).
Nothing here knows about HTTP or the queue.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from deepfake_api import tracking
from deepfake_api.errors import (
    InvalidVideo,
    NoVideoStream,
    UnsupportedVideoType,
    VideoTooLarge,
    VideoTooLong,
    VideoTooSmall,
)
from deepfake_api.model import Decision

VIDEO_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
}
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
SNIFF_BYTES = 64


def sniff_container(head: bytes) -> str | None:
    """The container from the file's first bytes (never its name): mp4, mov, webm, mkv, avi or None."""
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or its WebM profile
        return "webm" if b"webm" in head[:SNIFF_BYTES] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def accepted_container(head: bytes) -> str:
    kind = sniff_container(head)
    if kind is None:
        raise UnsupportedVideoType(f"The file is not an accepted video type ({', '.join(VIDEO_TYPES.values())}).")
    return kind


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    min_side: int
    max_duration_s: float


@dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int  # as coded (a phone video's display matrix may turn its frames: see Sampled.rotation)
    height: int
    duration_s: float | None
    fps: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "media_type": VIDEO_TYPES[self.container],
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "fps": None if self.fps is None else round(self.fps, 3),
        }


def _open(path: Path, **options: Any) -> Any:
    try:
        return av.open(str(path), mode="r", **options)
    except av.error.FFmpegError as exc:
        raise InvalidVideo(f"The video is truncated or corrupt ({_reason(exc)}).") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or type(exc).__name__)


def probe(path: Path, limits: Limits) -> VideoInfo:
    """The header's facts, refusing what cannot or must not be analysed; decodes no frame."""
    with open(path, "rb") as fh:
        container_kind = accepted_container(fh.read(SNIFF_BYTES))
    with _open(path) as container:
        videos = list(container.streams.video)
        if not videos:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise NoVideoStream(f"The file holds no video stream (streams: {', '.join(kinds)}).")
        stream = videos[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise InvalidVideo("The video stream has no frame size; it is truncated or corrupt.")
        if width * height > limits.max_pixels:
            raise VideoTooLarge(
                f"The frames are {width}x{height} ({width * height} pixels); the limit is {limits.max_pixels} pixels."
            )
        if min(width, height) < limits.min_side:
            raise VideoTooSmall(
                f"The frames are {width}x{height}; both sides must be at least {limits.min_side} pixels."
            )
        duration = _duration(container, stream)
        if duration is not None and duration > limits.max_duration_s:
            raise VideoTooLong(f"The video lasts {duration:.0f} s; the limit is {limits.max_duration_s:g} s.")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        return VideoInfo(container_kind, ctx.name, width, height, duration, fps)


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def sample_times(duration_s: float | None, sample_fps: float, max_frames: int) -> float:
    """Seconds between sampled frames: 1/sample_fps, or wider so that max_frames cover the whole video."""
    step = 1.0 / sample_fps
    if duration_s:
        step = max(step, duration_s / max_frames)
    return step


def planned_frames(duration_s: float | None, step: float, max_frames: int) -> int:
    if not duration_s:
        return max_frames
    # Frames at 0, step, 2·step, … strictly before the end.
    return max(1, min(max_frames, math.ceil(duration_s / step - 1e-9)))


@dataclass(frozen=True)
class Sampled:
    index: int  # position among sampled frames
    time_s: float
    rgb: np.ndarray  # upright
    coded: tuple[int, int]
    rotation: int  # degrees the frame was turned counter-clockwise to be upright (display matrix)


def sample_frames(path: Path, info: VideoInfo, limits: Limits, step: float, max_frames: int) -> Iterator[Sampled]:
    """Decode in order and yield the frames at 0, step, 2·step, … (by presentation time), upright."""
    with _open(path, stream_options=[{"max_pixels": str(limits.max_pixels)}]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_t, taken = 0.0, 0
        try:
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    continue
                if t > limits.max_duration_s:
                    break  # the header understated the length: stop at the limit
                if t + 1e-6 < next_t:
                    continue
                if frame.width * frame.height > limits.max_pixels:
                    raise VideoTooLarge(f"A frame is {frame.width}x{frame.height}, beyond the pixel limit.")
                rgb = frame.to_ndarray(format="rgb24")
                turns = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
                if turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
                yield Sampled(taken, float(t), rgb, (frame.width, frame.height), turns * 90)
                taken += 1
                if taken >= max_frames:
                    break
                next_t = max(next_t + step, float(t) + step * 0.5)
        except av.error.FFmpegError as exc:
            if taken == 0:
                raise InvalidVideo(f"No frame could be decoded ({_reason(exc)}).") from None
            return  # a truncated tail: what was decoded is analysed (the result warns)
        if taken == 0:
            raise InvalidVideo("The video stream holds no decodable frame.")


# -- face tracks: tracking.py (landmarks, motion and appearance; box overlap alone loses moving faces)

Tracker = tracking.Tracker

# -- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRule:
    """When a face track may decide the clip, and what it takes.

    min_frames: judged sampled frames a track needs (at 2 fps, 1.5 s of the face): a face seen
      once or twice is reported but cannot decide; a glimpse is too little evidence, and a face
      the tracker failed to follow must not count as several faces.
    min_face_side: the median shorter side (pixels, in the frame) of the track's judged faces: a
      face in the crowd is judged from faces.MIN_FACE_SIDE (40 px) and shown, but its crop is
      mostly upscaling, below what the detectors were trained and checked on.
    bonferroni: with k tracks able to decide, ask 1 - (1 - h) / k of each instead of the card's
      fake threshold h. Off: on a made 720p clip (tests/jobs/test_video_verdicts.py) it turned one
      swapped face the model is 0.97+ sure of as a still, median 0.964 over 8 frames, beside
      three genuine faces, into `uncertain` (0.970 needed). The chances to be wrong are held down
      instead by one chance per face (tracks that follow it, the median over its frames: at least
      half of them at the fake level) and by what may decide (min_frames, min_face_side).
    """

    min_frames: int = 3
    min_face_side: float = 64.0
    bonferroni: bool = False

    def fake_threshold(self, decision: Decision, eligible: int) -> float:
        """What an eligible track's score must reach for the clip to be `fake`, with `eligible`
        tracks able to decide: the card's fake threshold h, or with `bonferroni` 1 - (1 - h) / k
        (for a calibrated score the share of genuine faces reaching t is bounded in proportion to
        1 - t, so k genuine faces together get no more chances than one face at h)."""
        if not self.bonferroni:
            return decision.band_high
        return 1.0 - (1.0 - decision.band_high) / max(1, eligible)


CLIP_RULE = ClipRule()


def _track_summary(
    track_id: int, seen: list[tuple[dict[str, Any], dict[str, Any]]], decision: Decision, rule: ClipRule
) -> dict[str, Any]:
    scores = [face["score"] for _, face in seen]
    score = round(float(np.median(scores)), 6)
    side = round(float(np.median([min(face["box"]["width"], face["box"]["height"]) for _, face in seen])), 1)
    why = None
    if len(seen) < rule.min_frames:
        why = f"judged in {len(seen)} sampled frame{'s' if len(seen) != 1 else ''}; {rule.min_frames} are needed"
    elif side < rule.min_face_side:
        why = f"the face is {side:g} px; {rule.min_face_side:g} px are needed"
    return {
        "id": track_id,
        "label": decision.label(score),
        "score": score,
        "mean_score": round(float(np.mean(scores)), 6),
        "max_score": round(max(scores), 6),
        "frames": len(seen),
        "first_time_s": seen[0][0]["time_s"],
        "last_time_s": seen[-1][0]["time_s"],
        "fake_frames": [f["index"] for f, face in seen if face["label"] == "fake"],
        "face_side": side,
        "eligible": why is None,
        "not_eligible": why,
    }


def clip_verdict(tracks: list[dict[str, Any]], decision: Decision, rule: ClipRule = CLIP_RULE) -> dict[str, Any]:
    """The clip's label, score and reason from its tracks (as `_track_summary` makes them).

    Only eligible tracks decide. `fake`: an eligible track's score (the median of its frames'
    calibrated P(fake)) reaches the fake threshold for the number of eligible tracks. `real`: at
    least one eligible track, every eligible track labelled real, and no track at all labelled
    fake. Otherwise `uncertain` (`no_face` when no face was judged). The score is the most-fake
    eligible track's (the most-fake track's when none is eligible)."""
    eligible = [t for t in tracks if t["eligible"]]
    k = len(eligible)
    fake_at = decision.band_high if k == 0 else rule.fake_threshold(decision, k)
    facts = {
        "min_frames": rule.min_frames,
        "min_face_side": rule.min_face_side,
        "statistic": "median",
        "eligible_tracks": k,
        "bonferroni": rule.bonferroni,
        "fake_threshold": round(fake_at, 6),
        "real_threshold": decision.band_low,
    }
    if not tracks:
        return {"label": "no_face", "score": None, "reason": "no face was judged in any sampled frame", "rule": facts}
    top = max(eligible or tracks, key=lambda t: (t["score"], -t["id"]))
    score = top["score"]
    if not eligible:
        return {
            "label": "uncertain",
            "score": score,
            "reason": (
                f"no face track can decide: each was judged in fewer than {rule.min_frames} sampled frames "
                f"or is smaller than {rule.min_face_side:g} px"
            ),
            "rule": facts,
        }
    many = f"{k} face tracks can decide" if k > 1 else "1 face track can decide"
    if score >= fake_at:
        reason = (
            f"face track {top['id']} scored {score:.3f} (median over {top['frames']} frames), "
            f"at or above {fake_at:.3f} ({many})"
        )
        return {"label": "fake", "score": score, "reason": reason, "rule": facts}
    flagged = [t for t in tracks if t["label"] == "fake"]
    if all(t["label"] == "real" for t in eligible) and not flagged:
        reason = f"every face track that can decide scored at most {decision.band_low:g} ({many})"
        return {"label": "real", "score": score, "reason": reason, "rule": facts}
    if flagged:
        t = max(flagged, key=lambda t: t["score"])
        if t["eligible"]:
            reason = f"face track {t['id']} scored {t['score']:.3f}, below {fake_at:.3f} needed with {many}"
        else:
            reason = f"face track {t['id']} looked fake but cannot decide ({t['not_eligible']})"
    else:
        reason = f"face track {top['id']} scored {score:.3f}, neither real nor fake"
    return {"label": "uncertain", "score": score, "reason": reason, "rule": facts}


def aggregate(
    frames: list[dict[str, Any]], decision: Decision, top_k: int = 3, rule: ClipRule = CLIP_RULE
) -> dict[str, Any]:
    """Per-track and per-video verdicts from the sampled frames' judged faces.

    A track's score is the median of its faces' calibrated P(fake) (each frame an observation of
    the same face; one odd frame does not move it), labelled by the card's band; `mean_score`
    and `max_score` are beside it. The clip's label is `clip_verdict`'s. The top frames are the
    most-fake judged faces' frames.
    """
    by_track: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for frame in frames:
        for face in frame["faces"]:
            if face.get("score") is not None:
                by_track.setdefault(face["track"], []).append((frame, face))
    tracks = [_track_summary(track_id, seen, decision, rule) for track_id, seen in sorted(by_track.items())]
    verdict = clip_verdict(tracks, decision, rule)
    ranked = sorted(
        (
            (face["score"], frame["index"], face["track"])
            for frame in frames
            for face in frame["faces"]
            if face.get("score") is not None
        ),
        key=lambda t: (-t[0], t[1]),  # most fake first, the earlier frame on ties
    )
    times = {frame["index"]: frame["time_s"] for frame in frames}
    top_frames, seen_frames = [], set()
    for s, index, track_id in ranked:
        if index in seen_frames:
            continue
        seen_frames.add(index)
        top_frames.append({"index": index, "time_s": times[index], "track": track_id, "score": s})
        if len(top_frames) >= top_k:
            break
    return {
        "label": verdict["label"],
        "score": verdict["score"],
        "reason": verdict["reason"],
        "clip_rule": verdict["rule"],
        "tracks": tracks,
        "top_frames": top_frames,
    }
