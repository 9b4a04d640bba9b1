"""Request bodies as bounded streams: size limits, upload format by Content-Type, streaming multipart."""

from __future__ import annotations

from typing import BinaryIO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, File, MultipartDecoder, NeedData

from api.errors import ApiError
from model.readers import ReadError, format_from_content_type, format_from_path

READ_SIZE = 256 * 1024
# Multipart part headers and the non-file fields before the file are small; more is hostile.
MULTIPART_BUFFER_LIMIT = 1024 * 1024
SUPPORTED_UPLOAD_TYPES = "text/csv, application/x-ndjson, application/json or multipart/form-data with a file part"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})


def too_large(limit: int) -> ApiError:
    """The 413 answered when a body passes `limit` bytes."""
    return ApiError(413, "too_large", f"request body exceeds the limit of {limit} bytes", {"limit_bytes": limit})


def check_declared_length(req: Request, limit: int) -> None:
    """Refuse at once a body whose Content-Length already says it is over `limit`, before reading any of it."""
    if req.content_length is not None and req.content_length > limit:
        raise too_large(limit)


class LimitedStream:
    """A read-only view of `raw` that raises 413 as soon as more than `limit` bytes have been read."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (never an unbounded read: -1 means one read-size block)."""
        data = self._raw.read(READ_SIZE if size is None or size < 0 else size)
        self.bytes_read += len(data)
        if self.bytes_read > self._limit:
            raise too_large(self._limit)
        return data


def read_body(req: Request, limit: int) -> bytes:
    """The whole body of a small request (/predict), refused with 413 past `limit` bytes."""
    check_declared_length(req, limit)
    stream = LimitedStream(req.stream, limit)
    parts: list[bytes] = []
    while block := stream.read(READ_SIZE):
        parts.append(block)
    return b"".join(parts)


def media_type_format(media_type: str | None) -> str | None:
    """The reader format of a media type (parameters ignored), or None when it is not one we read."""
    try:
        return format_from_content_type(media_type)
    except ReadError:
        return None


def filename_format(filename: str | None) -> str | None:
    """The reader format named by a file's extension, or None."""
    try:
        return format_from_path(filename) if filename else None
    except ReadError:
        return None


def unsupported_media_type(got: str | None) -> ApiError:
    """The 415 for an upload whose type we do not read."""
    return ApiError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {got!r}: send {SUPPORTED_UPLOAD_TYPES}" if got else
        f"missing Content-Type: send {SUPPORTED_UPLOAD_TYPES}",
        {"content_type": got},
    )


def check_charset(content_type: str | None) -> None:
    """Refuse with 415 a declared charset other than UTF-8: bodies are read as UTF-8 (no charset means UTF-8)."""
    charset = parse_options_header(content_type or "")[1].get("charset")
    if charset is not None and charset.strip().lower() not in UTF8_CHARSETS:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"unsupported charset {charset!r}: bodies are read as UTF-8; send charset=utf-8 or no charset",
            {"content_type": content_type, "charset": charset},
        )


class MultipartFileStream:
    """The first file part of a multipart/form-data body, decoded incrementally and read like a file."""

    def __init__(self, raw: LimitedStream, boundary: bytes) -> None:
        self._raw = raw
        self._decoder = MultipartDecoder(boundary, MULTIPART_BUFFER_LIMIT, max_parts=64)
        self._pending = bytearray()
        self._in_file = False
        self._done = False
        self.filename = ""
        self.content_type: str | None = None
        self._seek_file()

    def _event(self) -> object:
        """The decoder's next event, feeding it more of the body while it needs data."""
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:
                raise ApiError(400, "malformed", f"malformed multipart body: {exc}") from None
            if not isinstance(event, NeedData):
                return event
            block = self._raw.read(READ_SIZE)
            try:
                self._decoder.receive_data(block or None)
            except RequestEntityTooLarge:
                raise ApiError(413, "too_large", "multipart part headers or fields are too large") from None

    def _seek_file(self) -> None:
        """Skip the preamble and any plain fields up to the first file part."""
        while True:
            event = self._event()
            if isinstance(event, File):
                self.filename = event.filename
                self.content_type = event.headers.get("Content-Type")
                self._in_file = True
                return
            if isinstance(event, Epilogue):
                raise ApiError(400, "missing_file", "the multipart body has no file part (use -F file=@rows.csv)")

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the file part; b"" once it ends (later parts are ignored)."""
        want = READ_SIZE if size is None or size < 0 else size
        while self._in_file and len(self._pending) < want:
            event = self._event()
            if isinstance(event, Data):
                self._pending += event.data
                self._in_file = event.more_data
        out = bytes(self._pending[:want])
        del self._pending[:want]
        return out

    def upload_format(self) -> str | None:
        """The part's format: its Content-Type when specific, else its filename extension."""
        return media_type_format(self.content_type) or filename_format(self.filename)


def open_upload(req: Request, limit: int) -> tuple[BinaryIO | MultipartFileStream | LimitedStream, str]:
    """The upload as a bounded stream and its reader format, or 413/415/400 before reading rows."""
    check_declared_length(req, limit)
    raw = LimitedStream(req.stream, limit)
    content_type = req.headers.get("Content-Type")
    mimetype, options = parse_options_header(content_type or "")
    if mimetype.lower() == "multipart/form-data":
        boundary = options.get("boundary", "")
        if not boundary:
            raise ApiError(400, "malformed", "multipart/form-data without a boundary parameter")
        part = MultipartFileStream(raw, boundary.encode("latin-1"))
        check_charset(part.content_type)
        fmt = part.upload_format()
        if fmt is None:
            raise unsupported_media_type(part.content_type or part.filename or None)
        return part, fmt
    fmt = media_type_format(content_type)
    if fmt is None:
        raise unsupported_media_type(content_type)
    check_charset(content_type)
    return raw, fmt
