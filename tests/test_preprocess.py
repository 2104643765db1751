"""decode_image: type by magic bytes, pixel cap before decoding, bombs, corruption, modes, EXIF, frames."""

from __future__ import annotations

import io
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image

from deepfake_api.errors import ImageTooLarge, ImageTooSmall, InvalidImage, UnsupportedMediaType
from deepfake_api.preprocess import MEDIA_TYPES, decode_image, sniff_format
from tests.utils.hostile import (
    MODE_FORMATS,
    animated_gif,
    halves_with_orientation,
    header_bombs,
    image_in_mode,
    jpeg_with_huge_exif,
)
from tests.utils.images import encode, jpeg_bytes, noise_rgb, png_bytes

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.mark.parametrize(("mode", "fmt"), MODE_FORMATS, ids=[f"{m}-{f}" for m, f in MODE_FORMATS])
def test_decode_turns_every_mode_into_8_bit_rgb(mode: str, fmt: str) -> None:
    decoded = decode_image(image_in_mode(mode, fmt=fmt))
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.shape == (64, 64, 3)
    assert decoded.rgb.flags.c_contiguous
    assert decoded.format == fmt
    assert decoded.warnings == []


def test_sixteen_bit_grey_keeps_its_levels() -> None:
    grey = np.asarray(Image.fromarray(noise_rgb(64, 64)).convert("L"))
    decoded = decode_image(image_in_mode("I;16"))
    assert np.array_equal(decoded.rgb[:, :, 0], grey)
    assert np.array_equal(decoded.rgb[:, :, 0], decoded.rgb[:, :, 2])


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P+tRNS"])
def test_transparent_pixels_are_flattened_on_white(mode: str) -> None:
    arr = np.zeros((48, 48, 4), np.uint8)
    arr[..., 0] = 200  # a red-ish colour hidden under alpha 0 on the left half
    arr[:, 24:] = (10, 20, 30, 255)
    img = Image.fromarray(arr)
    if mode == "LA":
        data = encode(img.convert("LA"), "PNG")
    elif mode == "P+tRNS":
        pal = Image.new("P", (48, 48), 0)
        pal.putpalette([200, 0, 0, 10, 20, 30] + [0] * 762)
        pal.paste(1, (24, 0, 48, 48))
        data = encode(pal, "PNG", transparency=0)
    else:
        data = encode(img, "PNG")
    rgb = decode_image(data).rgb
    assert tuple(rgb[10, 5]) == (255, 255, 255)
    assert tuple(rgb[10, 40]) != (255, 255, 255)


@pytest.mark.parametrize(
    ("orientation", "shape", "top_left"),
    [
        (1, (60, 120), RED),
        (2, (60, 120), BLUE),
        (3, (60, 120), BLUE),
        (4, (60, 120), RED),
        (5, (120, 60), RED),
        (6, (120, 60), RED),
        (7, (120, 60), BLUE),
        (8, (120, 60), BLUE),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(orientation: int, shape: tuple[int, int], top_left: tuple, fmt: str) -> None:
    decoded = decode_image(halves_with_orientation(orientation, fmt))
    assert decoded.rgb.shape[:2] == shape
    assert np.abs(decoded.rgb[3, 3].astype(int) - top_left).max() < 40
    assert (decoded.width, decoded.height) == (120, 60)  # as uploaded, before orientation


def test_huge_exif_is_read_without_trouble() -> None:
    data = jpeg_with_huge_exif(orientation=6)
    assert len(data) > 60_000
    assert decode_image(data).rgb.shape == (64, 64, 3)


def test_animated_gif_is_judged_on_its_first_frame_with_a_warning() -> None:
    data = animated_gif(frames=4)
    first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_image(data)
    assert np.array_equal(decoded.rgb, first)
    assert decoded.warnings == ["animated image: only the first frame was judged"]


def _many_frame_gif(frames: int) -> bytes:
    """A 64x64 GIF followed by `frames` one-pixel frames: a few kB of input per thousand frames."""
    base = Image.new("P", (64, 64), 1)
    base.putpalette([40, 40, 40, 90, 90, 90] + [0] * 762)
    dot = base.copy()
    dot.putpixel((0, 0), 0)
    buf = io.BytesIO()
    base.save(buf, "GIF", save_all=True, append_images=[dot], duration=10, disposal=1)
    gif = buf.getvalue()
    frame = gif[gif.rindex(b"!\xf9") : -1]  # graphic control extension + 1x1 image, before the trailer
    return gif[:-1] + frame * frames + b";"


def test_counting_frames_does_not_walk_the_whole_animation() -> None:
    """Only "is there a second frame" matters; walking 100k frames would make a tiny upload a CPU sink."""
    data = _many_frame_gif(100_000)
    started = time.thread_time()
    decoded = decode_image(data)
    cpu = time.thread_time() - started
    assert decoded.warnings == ["animated image: only the first frame was judged"]
    assert cpu < 0.5, f"decoding a {len(data)} byte GIF took {cpu:.2f} s of CPU"


@pytest.mark.parametrize("name", list(header_bombs()))
def test_header_bombs_are_refused_from_the_header_before_decoding(name: str) -> None:
    data = header_bombs()[name]
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as caught:
            decode_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 5_000_000, f"{peak} bytes allocated: the pixels were decoded"


def test_pixel_cap_is_configurable() -> None:
    data = png_bytes(200, 100)
    assert decode_image(data, max_pixels=20_000).rgb.shape == (100, 200, 3)
    with pytest.raises(ImageTooLarge, match="200x100"):
        decode_image(data, max_pixels=19_999)


def test_decompression_bomb_warning_is_an_error_even_when_warnings_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pillow warns between MAX_IMAGE_PIXELS and twice that; our own cap is set out of the way.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    data = png_bytes(120, 120)  # 14,400 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageTooLarge, match="too many pixels"):
            decode_image(data, max_pixels=10**9)


@pytest.mark.parametrize(
    "data",
    [
        jpeg_bytes(120, 120)[:400],
        png_bytes(120, 120)[:200],
        png_bytes(120, 120)[:-300],
        encode(Image.fromarray(noise_rgb(120, 120)), "WEBP")[:100],
        encode(Image.fromarray(noise_rgb(120, 120)), "BMP")[:500],
        encode(Image.fromarray(noise_rgb(120, 120)), "TIFF")[:300],
        encode(Image.fromarray(noise_rgb(120, 120)).convert("P"), "GIF")[:300],
        b"\xff\xd8\xff" + b"\x00" * 100,
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"BM",
        b"II*\x00" + b"\xff" * 40,
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    ],
    ids=lambda d: f"{len(d)}B",
)
def test_truncated_or_corrupt_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, not an image",
        b"%PDF-1.7\n",
        b"PK\x03\x04zip",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\x00\x00\x00\x18ftypheic",
        b"\xff\xd8",  # one byte short of a JPEG signature
        b"\x89PNG",
    ],
)
def test_unknown_magic_bytes_are_refused_listing_the_accepted_types(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decode_image(data)
    assert caught.value.status == 415
    for media_type in MEDIA_TYPES.values():
        assert media_type in caught.value.detail


def test_the_type_comes_from_the_bytes_not_a_name() -> None:
    assert sniff_format(png_bytes()) == "PNG"
    assert sniff_format(jpeg_bytes()) == "JPEG"
    assert decode_image(png_bytes()).format == "PNG"


@pytest.mark.parametrize(("width", "height"), [(31, 200), (200, 31), (1, 1), (16, 16)])
def test_images_with_a_side_below_the_minimum_are_too_small(width: int, height: int) -> None:
    with pytest.raises(ImageTooSmall) as caught:
        decode_image(png_bytes(width, height))
    assert caught.value.status == 422
    assert decode_image(png_bytes(32, 32)).rgb.shape == (32, 32, 3)


def test_the_minimum_side_is_checked_after_orientation() -> None:
    data = encode(Image.fromarray(noise_rgb(64, 20)), "PNG")
    with pytest.raises(ImageTooSmall):
        decode_image(data, min_side=32)
    assert decode_image(data, min_side=20).rgb.shape == (20, 64, 3)


@pytest.mark.parametrize("side", [250, 600, 2400, 3000])
def test_jpegs_decode_at_full_resolution_so_small_faces_keep_their_pixels(side: int) -> None:
    data = encode(Image.fromarray(noise_rgb(side, side)), "JPEG", quality=90)
    assert decode_image(data).rgb.shape[:2] == (side, side)


def test_png_is_never_scaled_at_decode() -> None:
    assert decode_image(png_bytes(600, 600)).rgb.shape[:2] == (600, 600)
