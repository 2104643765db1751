"""Videos: container sniffing, header checks, frame sampling, face tracks and the verdict over time.

Decoding is PyAV's (its wheel carries FFmpeg). `probe` reads only the container header and
refuses what is not a video we analyse (type from the bytes, no video stream, frames too small or
too large, too long) before a single frame is decoded. `sample_frames` decodes in order and keeps
frames at the sampling times (variable frame rates included: times come from each frame's pts),
upright (the display-matrix rotation of phone videos applied), with the decoder itself capped at
the pixel limit in case the header understated the frame size. `Tracker` links faces across
sampled frames by box overlap; `aggregate` turns per-face scores into per-track and per-video
verdicts with the image service's labels. Nothing here knows about HTTP or the queue.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

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


# -- face tracks ---------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: Box
    last_index: int


@dataclass
class Tracker:
    """Greedy IoU linking: each face joins the live track whose last box it overlaps most (at least
    `min_iou`), else starts a new track; a track unseen for `max_gap` sampled frames ends."""

    min_iou: float = 0.3
    max_gap: int = 3
    _tracks: list[_Track] = field(default_factory=list)
    _next: int = 0

    def assign(self, index: int, boxes: list[Box]) -> list[int]:
        live = [t for t in self._tracks if index - t.last_index <= self.max_gap]
        pairs = sorted(((iou(b, t.box), i, k) for i, b in enumerate(boxes) for k, t in enumerate(live)), reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if ids[i] is None and k not in used:
                ids[i] = live[k].id
                used.add(k)
                live[k].box, live[k].last_index = boxes[i], index
        for i, b in enumerate(boxes):
            if ids[i] is None:
                track = _Track(self._next, b, index)
                self._next += 1
                self._tracks.append(track)
                ids[i] = track.id
        return [i for i in ids if i is not None]


# -- the verdict ---------------------------------------------------------------------------------


def aggregate(frames: list[dict[str, Any]], decision: Decision, top_k: int = 3) -> dict[str, Any]:
    """Per-track and per-video verdicts from the sampled frames' judged faces.

    A track's score is the mean of its faces' calibrated P(fake) (each frame an observation of
    the same face), labelled by the card's band. The video is `fake` when any track is, `real`
    when every track is, else `uncertain`; its score is its most-fake track's; `no_face` when no
    face was judged in any frame. The top frames are the most-fake judged faces' frames.
    """
    by_track: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for frame in frames:
        for face in frame["faces"]:
            if face.get("score") is not None:
                by_track.setdefault(face["track"], []).append((frame, face))
    tracks = []
    for track_id, seen in sorted(by_track.items()):
        scores = [face["score"] for _, face in seen]
        score = round(float(np.mean(scores)), 6)
        tracks.append(
            {
                "id": track_id,
                "label": decision.label(score),
                "score": score,
                "max_score": round(max(scores), 6),
                "frames": len(seen),
                "first_time_s": seen[0][0]["time_s"],
                "last_time_s": seen[-1][0]["time_s"],
                "fake_frames": [f["index"] for f, face in seen if face["label"] == "fake"],
            }
        )
    if not tracks:
        label, score = "no_face", None
    else:
        top = max(tracks, key=lambda t: t["score"])
        score = top["score"]
        labels = {t["label"] for t in tracks}
        label = "fake" if "fake" in labels else "real" if labels == {"real"} else "uncertain"
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
    return {"label": label, "score": score, "tracks": tracks, "top_frames": top_frames}
