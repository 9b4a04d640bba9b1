"""Bounded request streams, format by Content-Type, and multipart decoded incrementally."""

from __future__ import annotations

import io

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from api.errors import ApiError
from api.uploads import LimitedStream, MultipartFileStream, filename_format, media_type_format, open_upload

BOUNDARY = "xYzZy"


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(min(self._step, n if n >= 0 else self._step))


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename, content type, data) parts."""
    out = b""
    for name, filename, ctype, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {ctype}\r\n".encode() if ctype else b""
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def read_all(stream, size: int = 7) -> bytes:
    out = b""
    while block := stream.read(size):
        out += block
    return out


def test_limited_stream_raises_413_once_past_the_limit() -> None:
    stream = LimitedStream(io.BytesIO(b"a" * 10), 8)
    assert stream.read(8) == b"a" * 8
    with pytest.raises(ApiError) as refused:
        stream.read(8)
    assert refused.value.status == 413


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_multipart_file_part_is_streamed_whatever_the_read_sizes(step: int) -> None:
    payload = b"x5,x12\r\nmonday,1\r\n" * 50 + b"--not-a-boundary\r\n"
    body = multipart(("note", None, None, b"hello"), ("file", "rows.csv", "text/csv", payload), ("x", None, None, b"z"))
    part = MultipartFileStream(LimitedStream(Trickle(body, step), len(body)), BOUNDARY.encode())
    assert part.filename == "rows.csv"
    assert part.upload_format() == "csv"
    assert read_all(part) == payload


def test_multipart_part_format_falls_back_to_the_extension() -> None:
    body = multipart(("file", "rows.ndjson", "application/octet-stream", b'{"a": 1}\n'))
    part = MultipartFileStream(LimitedStream(io.BytesIO(body), len(body)), BOUNDARY.encode())
    assert part.upload_format() == "ndjson"


def test_multipart_without_a_file_part_is_400() -> None:
    body = multipart(("note", None, None, b"hello"))
    with pytest.raises(ApiError) as refused:
        MultipartFileStream(LimitedStream(io.BytesIO(body), len(body)), BOUNDARY.encode())
    assert (refused.value.status, refused.value.code) == (400, "missing_file")


@pytest.mark.parametrize("cut", [12, 40, 120])
def test_truncated_multipart_is_400(cut: int) -> None:
    body = multipart(("file", "rows.csv", "text/csv", b"a,b\n1,2\n" * 4))[:-cut]
    with pytest.raises(ApiError) as refused:
        read_all(MultipartFileStream(LimitedStream(io.BytesIO(body), len(body)), BOUNDARY.encode()))
    assert refused.value.code == "malformed"


@pytest.mark.parametrize(
    ("media_type", "fmt"),
    [("text/csv; charset=utf-8", "csv"), ("application/x-ndjson", "ndjson"), ("application/json", "json"),
     ("text/plain", None), (None, None), ("", None)],
)
def test_media_type_format(media_type: str | None, fmt: str | None) -> None:
    assert media_type_format(media_type) == fmt


@pytest.mark.parametrize(("name", "fmt"), [("a.CSV", "csv"), ("a.jsonl", "ndjson"), ("a.txt", None), ("", None)])
def test_filename_format(name: str, fmt: str | None) -> None:
    assert filename_format(name) == fmt


def _request(body: bytes, content_type: str | None, **headers: str) -> Request:
    builder = EnvironBuilder(method="POST", input_stream=io.BytesIO(body), headers=headers)
    environ = builder.get_environ()
    environ["CONTENT_LENGTH"] = str(len(body))
    if content_type is None:
        environ.pop("CONTENT_TYPE", None)
    else:
        environ["CONTENT_TYPE"] = content_type
    return Request(environ)


def test_open_upload_refuses_declared_oversize_before_reading() -> None:
    request = _request(b"x" * 100, "text/csv")
    with pytest.raises(ApiError) as refused:
        open_upload(request, 99)
    assert refused.value.status == 413
    assert request.stream.read(1) == b"x"  # nothing was consumed


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml"])
def test_open_upload_refuses_unknown_types_with_415(content_type: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        open_upload(_request(b"a,b\n", content_type), 1000)
    assert refused.value.status == 415


def test_open_upload_multipart_without_boundary_is_400() -> None:
    with pytest.raises(ApiError) as refused:
        open_upload(_request(b"--x\r\n", "multipart/form-data"), 1000)
    assert refused.value.status == 400
