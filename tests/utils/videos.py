"""Videos written in the test with PyAV, from images: known faces in known frames."""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image


def write_video(
    frames: Sequence[np.ndarray],
    *,
    fps: int = 4,
    fmt: str = "mp4",
    codec: str = "libx264",
    crf: int = 12,
    times: Sequence[float] | None = None,
    rotation: int = 0,
) -> bytes:
    """RGB frames -> an encoded video; `times` (seconds) gives a variable frame rate; `rotation`
    writes a display matrix (degrees counter-clockwise to display upright)."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format=fmt)
    stream = out.add_stream(codec, rate=fps, options={"crf": str(crf)} if codec == "libx264" else {})
    h, w = frames[0].shape[:2]
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    if times is not None:
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if times is not None:
            frame.pts = round(times[i] * 1000)
            frame.time_base = stream.time_base
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    data = buf.getvalue()
    if rotation:
        data = with_display_rotation(data, rotation)
    return data


def with_display_rotation(mp4: bytes, degrees: int) -> bytes:
    """Patch the first track header's matrix, as a phone does for a video shot sideways."""
    import struct

    i = mp4.find(b"tkhd")
    version = mp4[i + 4]
    offset = i + 4 + 4 + (28 if version == 1 else 16) + 8 + 8
    c = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees % 360]
    cos, sin = c
    matrix = struct.pack(">9i", cos << 16, -sin << 16 if sin else 0, 0, sin << 16, cos << 16, 0, 0, 0, 0x40000000)
    return mp4[:offset] + matrix + mp4[offset + 36 :]


def canvas_with(
    tiles: Sequence[tuple[Image.Image | None, tuple[int, int]]], size: tuple[int, int] = (640, 360)
) -> np.ndarray:
    """A flat grey frame with face images pasted at the given top-left corners."""
    canvas = Image.new("RGB", size, (120, 120, 120))
    for tile, at in tiles:
        if tile is not None:
            canvas.paste(tile, at)
    return np.asarray(canvas)
