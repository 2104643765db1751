"""Hostile and unusual uploads for the input-handling tests: bombs, every mode, odd multipart bodies.

Everything is generated in memory; nothing here touches the disk or the network.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.utils.images import encode, noise_rgb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
EXIF_USER_COMMENT = 0x9286


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and a correct CRC, so only the claimed size is a lie."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_bomb(width: int = 50_000, height: int = 50_000, idat: bytes | None = None) -> bytes:
    """A PNG whose IHDR claims width x height RGB pixels; the data is a few bytes (or `idat`)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def png_zip_bomb(side: int = 7_000) -> bytes:
    """A genuine side x side grey PNG (every row filter 0, every pixel 0): ~49 Mpx that deflates to ~50 kB."""
    row = b"\x00" * (side + 1)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def jpeg_header_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A small real JPEG whose SOF0 segment is patched to claim width x height."""
    data = bytearray(encode(Image.fromarray(noise_rgb(40, 40)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_header_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """A small GIF whose logical screen and first image descriptor claim width x height."""
    data = bytearray(encode(Image.fromarray(noise_rgb(40, 40)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    desc = data.index(b"\x2c", 13)  # the image separator after the global colour table
    data[desc + 5 : desc + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A small BMP whose info header claims width x height."""
    data = bytearray(encode(Image.fromarray(noise_rgb(40, 40)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def header_bombs() -> dict[str, bytes]:
    return {
        "png-50000x50000": png_header_bomb(),
        "png-8000x8000": png_header_bomb(8_000, 8_000),  # over our 40 Mpx cap, under Pillow's own warning
        "png-zip-bomb": png_zip_bomb(),
        "jpeg-65000x65000": jpeg_header_bomb(),
        "gif-65535x65535": gif_header_bomb(),
        "bmp-50000x50000": bmp_header_bomb(),
    }


def image_in_mode(mode: str, size: int = 64, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A textured image stored in Pillow mode `mode` (L, LA, P, RGBA, CMYK, I;16, 1, I, F, P+tRNS)."""
    rgb = Image.fromarray(noise_rgb(size, size, seed))
    if mode == "P+tRNS":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return encode(img, fmt, transparency=0)
    if mode == "I;16":
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        return encode(Image.fromarray(arr), fmt)  # uint16 -> mode I;16
    if mode == "LA":
        img = rgb.convert("LA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
        return encode(img, fmt)
    if mode == "RGBA":
        img = rgb.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
        return encode(img, fmt)
    return encode(rgb.convert(mode), fmt)


# Which container stores which mode (each pair round-trips through Pillow).
MODE_FORMATS: list[tuple[str, str]] = [
    ("L", "PNG"),
    ("L", "JPEG"),
    ("LA", "PNG"),
    ("P", "PNG"),
    ("P", "GIF"),
    ("P", "BMP"),
    ("P+tRNS", "PNG"),
    ("P+tRNS", "GIF"),
    ("RGBA", "PNG"),
    ("RGBA", "WEBP"),
    ("RGBA", "TIFF"),
    ("CMYK", "JPEG"),
    ("CMYK", "TIFF"),
    ("I;16", "PNG"),
    ("I;16", "TIFF"),
    ("1", "PNG"),
    ("1", "BMP"),
    ("I", "TIFF"),
    ("F", "TIFF"),
    ("RGB", "WEBP"),
    ("RGB", "TIFF"),
]


def animated_gif(frames: int = 3, size: int = 64) -> bytes:
    imgs = [Image.fromarray(noise_rgb(size, size, seed=i)).convert("P") for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:], duration=50, loop=0)
    return buf.getvalue()


def halves_with_orientation(orientation: int, fmt: str = "JPEG") -> bytes:
    """A 120x60 image, left half red and right half blue, tagged with an EXIF orientation."""
    arr = np.zeros((60, 120, 3), np.uint8)
    arr[:, :60] = (255, 0, 0)
    arr[:, 60:] = (0, 0, 255)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(Image.fromarray(arr), fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def jpeg_with_huge_exif(payload: int = 60_000, orientation: int = 1) -> bytes:
    """A JPEG carrying an APP1 EXIF segment close to the 64 kB segment limit."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[EXIF_USER_COMMENT] = b"ASCII\x00\x00\x00" + b"x" * payload
    return encode(Image.fromarray(noise_rgb(64, 64)), "JPEG", exif=exif.tobytes())


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"test-boundary-7MA4YWxk") -> tuple[bytes, str]:
    """A raw multipart/form-data body from (headers block, content) pairs, and its content type."""
    out = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    return out + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()


def file_part(
    data: bytes, name: str = "file", filename: str = "face.jpg", ctype: str = "image/jpeg"
) -> tuple[bytes, bytes]:
    head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {ctype}'
    return head.encode(), data
