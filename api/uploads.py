"""Request bodies as bounded streams: size limits, upload format by Content-Type, streaming multipart."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from flask import Request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, File, MultipartDecoder, NeedData

from api.errors import ApiError
from core.formats import FORMATS, format_for_media_type, format_for_path

READ_SIZE = 256 * 1024
# Multipart part headers and the non-file fields before the file are small; more is hostile.
MULTIPART_BUFFER_LIMIT = 1024 * 1024
SUPPORTED_UPLOAD_TYPES = f"{', '.join(f.media_type for f in FORMATS.values())} or multipart/form-data with a file part"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})
# RFC 9530 algorithms checked in a Content-Digest header; every upload is hashed with sha-256 in any case.
DIGESTS: dict[str, Callable[[], Any]] = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
# One member of the Content-Digest dictionary (RFC 8941 byte sequence): `sha-256=:<base64>:`.
DIGEST_MEMBER_RE = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?")


def too_large(limit: int) -> ApiError:
    """The 413 answered when a body passes `limit` bytes."""
    return ApiError(413, "too_large", f"request body exceeds the limit of {limit} bytes", {"limit_bytes": limit})


def check_declared_length(req: Request, limit: int) -> None:
    """Refuse at once a body whose Content-Length already says it is over `limit`, before reading any of it."""
    if req.content_length is not None and req.content_length > limit:
        raise too_large(limit)


class IncompleteBody(Exception):
    """The body did not end as its framing said it would: shorter than its Content-Length, a chunked body
    without its last chunk or with a malformed chunk, or the connection dropped mid-body."""

    def __init__(self, received: int, expected: int | None, cause: str) -> None:
        super().__init__(cause)
        self.received = received
        self.expected = expected
        self.cause = cause

    def describe(self) -> str:
        """One line for a job's reason and an error message."""
        of = f" of the {self.expected} announced by Content-Length" if self.expected is not None else ""
        return f"the request body ended early: {self.cause} after {self.received} bytes{of}"


# What a server's input stream raises when the body cannot be read to its end: a socket error or timeout
# (OSError, gunicorn's NoMoreData), gunicorn's framing errors (a bad chunk size, a chunk without its CRLF) and
# werkzeug's own check of Content-Length (ClientDisconnected).
BODY_FRAMING_ERRORS: tuple[type[BaseException], ...] = (OSError, ClientDisconnected)
try:
    from gunicorn.http.errors import ParseException as _GunicornParseError

    BODY_FRAMING_ERRORS += (_GunicornParseError,)
except ImportError:  # pragma: no cover - gunicorn is a dependency; only a bare WSGI server lacks it
    pass
try:
    from gunicorn.http.body import Body as _GunicornBody
    from gunicorn.http.body import LengthReader as _GunicornLengthReader
    from gunicorn.http.unreader import SocketUnreader as _GunicornSocketUnreader
except ImportError:  # pragma: no cover - as above
    _GunicornBody = _GunicornLengthReader = _GunicornSocketUnreader = None


class SocketBody:
    """A Content-Length body under gunicorn, read straight from the connection's socket.

    gunicorn's own body reader passes every block through two BytesIO buffers (copies of each byte and fresh
    allocations that bench/bench_api_cpu.py measures at 0.3-1.1 CPU s per GB above the socket's own cost);
    this reader hands on what each recv() returns. It keeps gunicorn's reader exact all along: the bytes gunicorn had
    already received beyond the headers are read first (anything past the body stays buffered for the next
    request), and the reader's remaining length is lowered by every byte read, so gunicorn drains (or closes
    on) only what is really left of the body. A closed connection reads as b"" before the announced length,
    which `LimitedStream` reports as an incomplete body, as with gunicorn's reader.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._sock = reader.unreader.sock
        buffered = reader.unreader.buf.getvalue()
        self._pending = buffered[: reader.length]
        reader.unreader.buf = io.BytesIO()
        reader.unreader.buf.write(buffered[reader.length :])
        reader.length -= len(self._pending)  # taken from gunicorn's buffer: no longer its to drain

    @classmethod
    def of(cls, stream: Any) -> SocketBody | None:
        """The socket reader of gunicorn's `wsgi.input` when it is a Content-Length body not read yet, else None."""
        if _GunicornBody is None or type(stream) is not _GunicornBody:
            return None
        reader = stream.reader
        if type(reader) is not _GunicornLengthReader or type(reader.unreader) is not _GunicornSocketUnreader:
            return None
        if stream.buf.tell():  # something was read through gunicorn's reader already
            return None
        return cls(reader)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body (what one recv() gives); b"" at its end or when the peer closed."""
        want = READ_SIZE if size is None or size < 0 else size
        if self._pending:
            data, self._pending = self._pending[:want], self._pending[want:]
            return data
        left = self._reader.length
        if left <= 0 or want <= 0:
            return b""
        data = self._sock.recv(min(left, want))
        self._reader.length = left - len(data)
        return data


def body_stream(req: Request) -> Any:
    """The request's body stream: the socket itself under gunicorn for a Content-Length body, else `req.stream`."""
    return SocketBody.of(req.environ.get("wsgi.input")) or req.stream


@dataclass(frozen=True)
class BodyReceipt:
    """What arrived of a body that ended properly: its length and its digests by RFC 9530 algorithm name."""

    bytes_received: int
    digests: dict[str, bytes]

    @property
    def sha256(self) -> str:
        """The body's sha256 in hex (every upload is hashed with it)."""
        return self.digests["sha-256"].hex()


class LimitedStream:
    """A read-only view of a request body that counts and hashes what it reads.

    It raises 413 as soon as more than `limit` bytes have been read, and `IncompleteBody` when the body ends
    before `expected` bytes (Content-Length) or the server reports the framing broken or the client gone, so
    a cut body can never look like a short one.
    """

    def __init__(self, raw: BinaryIO, limit: int, expected: int | None = None,
                 algorithms: tuple[str, ...] = ()) -> None:
        self._raw = raw
        self._limit = limit
        self._expected = expected
        self._hashes = {name: DIGESTS[name]() for name in algorithms}
        self._ended = False
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (never an unbounded read: -1 means one read-size block); b"" once the body ended."""
        if self._ended:
            return b""
        try:
            data = self._raw.read(READ_SIZE if size is None or size < 0 else size)
        except BODY_FRAMING_ERRORS as exc:
            raise IncompleteBody(self.bytes_read, self._expected, _framing_cause(exc)) from None
        if not data:
            if self._expected is not None and self.bytes_read < self._expected:
                raise IncompleteBody(self.bytes_read, self._expected, "the connection closed")
            self._ended = True
            return b""
        self.bytes_read += len(data)
        if self.bytes_read > self._limit:
            raise too_large(self._limit)
        for digest in self._hashes.values():
            digest.update(data)
        return data

    def finish(self) -> BodyReceipt:
        """Read what is left of the body (a trailing newline, a multipart epilogue) and confirm it ended."""
        while self.read(READ_SIZE):
            pass
        return BodyReceipt(self.bytes_read, {name: digest.digest() for name, digest in self._hashes.items()})


def _framing_cause(exc: BaseException) -> str:
    """Why the server could not read the body on, in a few words for the client."""
    name = type(exc).__name__
    if name == "InvalidChunkSize":
        return "a chunk size line was malformed"
    if name in {"ChunkMissingTerminator", "InvalidChunkExtension"}:
        return "a chunk was not terminated properly"
    if name == "NoMoreData":
        return "the connection closed before the last chunk"
    if isinstance(exc, TimeoutError):
        return "the client stopped sending"
    return "the connection closed"


def read_body(req: Request, limit: int) -> bytes:
    """The whole body of a small request (/predict), refused with 413 past `limit` bytes."""
    check_declared_length(req, limit)
    stream = LimitedStream(req.stream, limit)
    parts: list[bytes] = []
    while block := stream.read(READ_SIZE):
        parts.append(block)
    return b"".join(parts)


def media_type_format(media_type: str | None) -> str | None:
    """The upload format of a media type (parameters ignored), or None when it is not one we read."""
    return format_for_media_type(media_type)


def filename_format(filename: str | None) -> str | None:
    """The upload format named by a file's extension, or None."""
    return format_for_path(filename) if filename else None


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


def content_digests(header: str | None) -> dict[str, bytes]:
    """The digests a client announced in `Content-Digest` (RFC 9530) that we check, by algorithm.

    No header: nothing to check. A header that cannot be parsed, or that names none of the algorithms we
    compute, is refused with 400 before the body is read: the client asked for a check we cannot make.
    """
    if header is None:
        return {}
    announced: dict[str, bytes] = {}
    for member in header.split(","):
        match = DIGEST_MEMBER_RE.fullmatch(member)
        if match is None:
            raise ApiError(400, "invalid_header", "Content-Digest must be a list of algorithm=:base64: members "
                           "(RFC 9530), for example sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
                           {"header": "Content-Digest"})
        try:
            value = base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            raise ApiError(400, "invalid_header", f"Content-Digest {match.group(1)} is not valid base64",
                           {"header": "Content-Digest"}) from None
        announced[match.group(1)] = value
    checked = {name: value for name, value in announced.items() if name in DIGESTS}
    if not checked:
        raise ApiError(400, "invalid_header", f"Content-Digest names no algorithm we check: send one of "
                       f"{', '.join(DIGESTS)}", {"header": "Content-Digest", "supported": list(DIGESTS)})
    return checked


@dataclass
class Upload:
    """An upload being received: the stream its rows are read from, its reader format, the whole body as
    counted and hashed, and the digests the client announced."""

    rows: BinaryIO | MultipartFileStream | LimitedStream
    fmt: str
    body: LimitedStream
    announced: dict[str, bytes]


def open_upload(req: Request, limit: int) -> Upload:
    """The upload as a bounded, counted stream and its reader format, or 413/415/400 before reading rows."""
    check_declared_length(req, limit)
    announced = content_digests(req.headers.get("Content-Digest"))
    algorithms = tuple(dict.fromkeys(("sha-256", *announced)))
    raw = LimitedStream(body_stream(req), limit, req.content_length, algorithms)
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
        return Upload(part, fmt, raw, announced)
    fmt = media_type_format(content_type)
    if fmt is None:
        raise unsupported_media_type(content_type)
    check_charset(content_type)
    return Upload(raw, fmt, raw, announced)


def digest_mismatch(receipt: BodyReceipt, announced: dict[str, bytes]) -> str | None:
    """The first announced algorithm whose digest differs from the body's, or None when all agree."""
    return next((name for name, value in announced.items() if receipt.digests[name] != value), None)
