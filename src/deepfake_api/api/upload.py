"""Read one uploaded file from a multipart body into memory, streaming, with a size cap.

Starlette's UploadFile spools bodies over 1 MB to a temporary file; uploads here never
touch the disk. The body is fed chunk by chunk to python-multipart's parser and refused
(413) as soon as it passes the limit, before the rest is read, or (408, connection closed)
when it has not all arrived within the time limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from deepfake_api.errors import DeepfakeError, InvalidUpload, PayloadTooLarge, UnsupportedMediaType, UploadTimeout

FIELD = "file"
MAX_PARTS = 16
"""More parts than any real form sends; parsing 100k tiny parts would hold the event loop for seconds."""


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytearray
    """The file's bytes, as received: one buffer grown in place (no list of chunks joined at the end,
    which held each body twice and left the heap fragmented: RSS grew by twice the body budget)."""


@dataclass
class FileSlot:
    """One file of a batch: its upload, or why it was refused (the others are still judged)."""

    filename: str
    upload: Upload | None = None
    error: DeepfakeError | None = None


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    size: int = 0  # bytes seen; data stops growing past the per-file limit


class _Collector:
    def __init__(self, max_parts: int = MAX_PARTS, per_part: int | None = None) -> None:
        self.parts: list[_Part] = []
        self.ended = False
        self.max_parts = max_parts
        self.per_part = per_part
        self._name = b""
        self._value = b""

    def on_part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise InvalidUpload(f"The form has more than {self.max_parts} parts.")
        self.parts.append(_Part())

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if self.per_part is None or part.size <= self.per_part:
            part.data += memoryview(data)[start:end]
        elif part.data:
            part.data = bytearray()  # over the per-file limit: its bytes are dropped as they come

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.parts[-1].headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def on_end(self) -> None:
        self.ended = True


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload exceeds the limit of {limit} bytes ({limit / 1048576:.1f} MiB).")


async def read_upload(request: Request, max_bytes: int, timeout_s: float) -> Upload:
    """The single file in field `file` of a multipart/form-data body, all of it within `timeout_s`."""
    async with _upload_deadline(timeout_s):
        return _single_file((await _read(request, max_bytes, _Collector())).parts)


async def read_uploads(
    request: Request, *, max_bytes: int, per_file: int, max_files: int, timeout_s: float
) -> list[FileSlot]:
    """Every file in fields `file` of a multipart/form-data body, in order: a file over `per_file`
    bytes, empty or not named is refused in its slot; the body as a whole may hold `max_bytes`."""
    async with _upload_deadline(timeout_s):
        collector = await _read(request, max_bytes, _Collector(max_parts=max_files + 4, per_part=per_file))
    slots = [_slot(part, opts, per_file) for part, opts in _file_parts(collector.parts)]
    if not slots:
        raise _no_file(collector.parts)
    if len(slots) > max_files:
        raise InvalidUpload(f"Send at most {max_files} files in one batch; got {len(slots)}.")
    return slots


@asynccontextmanager
async def _upload_deadline(timeout_s: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise UploadTimeout(
            f"The upload took longer than {timeout_s:g} s to arrive; send it again.",
            headers={"Connection": "close"},  # the rest of the body is never read
        ) from None


class _FileCollector(_Collector):
    """The part in field `file` goes to `sink` (a file) as it arrives; other parts stay small in memory."""

    def __init__(self, sink: BinaryIO, small_part: int = 4096) -> None:
        super().__init__(per_part=small_part)
        self.sink = sink
        self.files = 0
        self.file_size = 0
        self.filename = ""
        self._to_sink = False

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._to_sink = False

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self.parts[-1].headers.get(b"content-disposition", b""))
        if opts.get(b"name", b"") == FIELD.encode():
            self.files += 1
            if self.files > 1:
                raise InvalidUpload(f"Send exactly one file in '{FIELD}'; got more. Use one request per video.")
            self._to_sink = True
            self.filename = opts.get(b"filename", b"").decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._to_sink:
            self.sink.write(memoryview(data)[start:end])
            self.file_size += end - start
        else:
            super().on_part_data(data, start, end)


async def read_upload_to_file(request: Request, sink: BinaryIO, max_bytes: int, timeout_s: float) -> tuple[str, int]:
    """The single file in field `file`, streamed into `sink` (never held in memory): its filename
    and size. Same limits and errors as read_upload."""
    async with _upload_deadline(timeout_s):
        collector = await _read(request, max_bytes, _FileCollector(sink))
    if collector.files == 0:
        raise _no_file(collector.parts)
    if collector.file_size == 0:
        raise InvalidUpload("The uploaded file is empty.")
    return collector.filename, collector.file_size


async def _read(request: Request, max_bytes: int, collector: _Collector) -> _Collector:
    media, params = parse_options_header(request.headers.get("content-type", ""))
    if media != b"multipart/form-data" or not params.get(b"boundary"):
        raise UnsupportedMediaType(
            "Send the image as multipart/form-data with the field 'file' (curl -F file=@face.jpg …)."
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    received = 0
    try:
        # Inside the try: the parser refuses some boundaries (e.g. over 256 bytes) when built.
        parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": collector.on_part_begin,
                "on_part_data": collector.on_part_data,
                "on_header_field": collector.on_header_field,
                "on_header_value": collector.on_header_value,
                "on_header_end": collector.on_header_end,
                "on_headers_finished": getattr(collector, "on_headers_finished", lambda: None),
                "on_end": collector.on_end,
            },
        )
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise InvalidUpload("The client closed the connection before the upload finished.") from None
    except (PayloadTooLarge, InvalidUpload):
        raise
    except OSError:  # the sink (a video's spool file) cannot be written: the caller's 503, not the client's 400
        raise
    except Exception as exc:  # python-multipart raises its own errors on malformed bodies
        raise InvalidUpload(f"The multipart body is malformed ({type(exc).__name__}).") from None
    if not collector.ended:  # python-multipart's finalize() does not check for the closing boundary
        raise InvalidUpload("The multipart body ends before its closing boundary; the upload is incomplete.")
    return collector


def _file_parts(parts: list[_Part]) -> list[tuple[_Part, dict[bytes, bytes]]]:
    out = []
    for part in parts:
        _, opts = parse_options_header(part.headers.get(b"content-disposition", b""))
        if opts.get(b"name", b"") == FIELD.encode():
            out.append((part, opts))
    return out


def _no_file(parts: list[_Part]) -> InvalidUpload:
    names = [parse_options_header(p.headers.get(b"content-disposition", b""))[1].get(b"name", b"") for p in parts]
    seen = ", ".join(repr(n.decode("latin-1")) for n in names) or "none"
    return InvalidUpload(f"No field named '{FIELD}' in the form (fields seen: {seen}).")


def _upload_of(part: _Part, opts: dict[bytes, bytes]) -> Upload:
    ctype, _ = parse_options_header(part.headers.get(b"content-type", b"application/octet-stream"))
    return Upload(
        filename=opts.get(b"filename", b"").decode("utf-8", "replace"),
        content_type=ctype.decode("latin-1"),
        data=part.data,
    )


def _slot(part: _Part, opts: dict[bytes, bytes], per_file: int) -> FileSlot:
    upload = _upload_of(part, opts)
    if part.size > per_file:
        return FileSlot(upload.filename, error=_too_large(per_file))
    if part.size == 0:
        return FileSlot(upload.filename, error=InvalidUpload("The uploaded file is empty."))
    return FileSlot(upload.filename, upload=upload)


def _single_file(parts: list[_Part]) -> Upload:
    files = _file_parts(parts)
    if not files:
        raise _no_file(parts)
    if len(files) > 1:
        raise InvalidUpload(f"Send exactly one file in '{FIELD}'; got {len(files)}. Use one request per image.")
    part, opts = files[0]
    if part.size == 0:
        raise InvalidUpload("The uploaded file is empty.")
    return _upload_of(part, opts)
