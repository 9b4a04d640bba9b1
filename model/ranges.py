"""Cut a CSV or NDJSON body into record-aligned byte ranges without parsing its rows.

The body's head (the CSV header and the complete records of its first block, or the first NDJSON records) is
read with the real reader at once, so a bad header or first record is refused exactly as `iter_chunks` would
refuse it. The rest is only cut: each range ends just past a line break that ends a record (CSV: outside
quotes, read the way the reader reads quotes; NDJSON: any newline) once it holds about `target_bytes`.
Parsing each range with `iter_chunks` (after the header, for CSV) gives the same records as parsing the whole
body, numbered from 0 in each range.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from model.readers import MAX_RECORD_BYTES, READ_BLOCK, BinaryStream, Chunk, ReadError, iter_chunks
from model.readers.csv import LINE_END, QUOTE, last_record_end

RANGE_FORMATS = ("csv", "ndjson")


@dataclass
class RecordRanges:
    """A body split for the workers: the CSV header (b"" for NDJSON) and the ranges that follow it."""

    fmt: str
    header: bytes
    ranges: Iterator[list[bytes]]  # each range as consecutive buffers (bytes or memoryviews), written in turn


def split_records(
    stream: BinaryStream, fmt: str, *, target_bytes: int, columns: Sequence[str], passthrough: str | None = None
) -> RecordRanges:
    """Check the body's head and return its record ranges (read only as the iterator is consumed).

    Raises ReadError at once for a head `iter_chunks` refuses (missing columns, empty body, ...).
    """
    if fmt not in RANGE_FORMATS:
        raise ValueError(f"only {', '.join(RANGE_FORMATS)} bodies are cut into ranges, not {fmt!r}")
    data, eof = _read_block(stream, b"")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    header = b""
    if fmt == "csv":
        header, data, eof = _split_header(stream, data, eof)
    _check_head(header, data, eof, fmt, columns, passthrough)
    return RecordRanges(fmt, header, _ranges(stream, data, eof, fmt, target_bytes))


def parse_range(data: bytes, fmt: str, header: bytes, *, columns: Sequence[str],
                passthrough: str | None = None) -> Chunk:
    """The records of one range (rows numbered from 0), typed as `iter_chunks` types a chunk.

    The body's head was checked when it was split, so a range's first NDJSON record need not carry every
    column (as any later record of the body need not). A range holding no record (blank lines) gives an empty
    chunk. A CSV range must end outside quotes as the reader reads them: that proves the cut that ended it,
    made by counting quotes, fell between two records.
    """
    if fmt == "csv" and not _ends_a_record(data):
        raise ReadError("malformed", "the CSV body's quotes do not pair up as RFC 4180 field quotes (a quoted field "
                        "left open, or a quote inside an unquoted field next to a line break inside quotes)")
    stream = _Chain([io.BytesIO(header + b"\n"), io.BytesIO(data)] if fmt == "csv" else [io.BytesIO(data)])
    try:
        chunks = list(iter_chunks(stream, fmt, columns=columns, chunk_rows=1 << 62, passthrough=passthrough,
                                  check_first_record=False))
    except ReadError as exc:
        if exc.code != "empty":
            raise
        chunks = []
    if not chunks:
        empty = next(iter_chunks(io.BytesIO(_placeholder(fmt, header, columns, passthrough)), fmt, columns=columns,
                                 chunk_rows=1, passthrough=passthrough))
        return Chunk(table=empty.table.slice(0, 0), errors=[], first_row=0, rows=0)
    return chunks[0]


def _ends_a_record(data: bytes) -> bool:
    """Whether `data` (starting at a record) ends outside quotes, as the reader reads them."""
    if data.endswith((b"\n", b"\r")):
        return last_record_end(data) == len(data)
    return last_record_end(data + b"\n") == len(data) + 1  # the body's last range, without a final line break


class _Chain:
    """Streams read one after the other, as one."""

    def __init__(self, streams: list[io.BytesIO]) -> None:
        self._streams = streams

    def read(self, n: int = -1) -> bytes:
        while self._streams:
            data = self._streams[0].read(n)
            if data:
                return data
            self._streams.pop(0)
        return b""


def _placeholder(fmt: str, header: bytes, columns: Sequence[str], passthrough: str | None) -> bytes:
    """A one-record body whose table has the right column names (for the empty chunk's schema)."""
    if fmt == "csv":
        return header + b"\n" + b"," * header.count(b",") + b"\n"
    keys = list(dict.fromkeys([*columns, *([passthrough] if passthrough else [])]))
    return ("{" + ",".join(f'"{k}": null' for k in keys) + "}\n").encode()


def _read_block(stream: BinaryStream, data: bytes) -> tuple[bytes, bool]:
    """`data` plus one more block of the stream, and whether the stream ended."""
    parts = [data]
    got = 0
    while got < READ_BLOCK:
        part = stream.read(READ_BLOCK - got)
        if not part:
            return b"".join(parts), True
        parts.append(part)
        got += len(part)
    return b"".join(parts), False


def _split_header(stream: BinaryStream, data: bytes, eof: bool) -> tuple[bytes, bytes, bool]:
    """The CSV header line (blank lines before it dropped) and the bytes after its line break."""
    while True:
        data = data.lstrip(b"\r\n")
        end = LINE_END.search(data)
        if end or eof:
            break
        if len(data) > MAX_RECORD_BYTES:
            raise ReadError("line_too_long", f"the CSV header is longer than {MAX_RECORD_BYTES} bytes", line=1)
        data, eof = _read_block(stream, data)
    if end is None:
        return data, b"", eof
    return data[: end.start()], data[end.end():], eof


def _check_head(header: bytes, data: bytes, eof: bool, fmt: str, columns: Sequence[str],
                passthrough: str | None) -> None:
    """Run the reader on the complete records read so far: it raises for a head it would refuse."""
    cut = len(data) if eof else _record_end(data, fmt)
    head = header + b"\n" + data[:cut] if fmt == "csv" else data[:cut]
    try:
        for _ in iter_chunks(io.BytesIO(head), fmt, columns=columns, chunk_rows=1 << 62, passthrough=passthrough):
            pass
    except ReadError as exc:
        if eof or exc.code != "empty":
            raise
        # No complete record in the first block: the records come later, and their ranges are read by workers.


def _record_end(data: bytes, fmt: str, stop: int | None = None) -> int:
    """Index just past the last line break before `stop` that ends a record (0 when there is none)."""
    return data.rfind(b"\n", 0, stop) + 1 if fmt == "ndjson" else last_record_end(data, stop)


def _cut(buf: bytes, fmt: str, target_bytes: int) -> int:
    """The last record end within the target, else the nearest one past it (0 when `buf` holds none)."""
    stop = target_bytes
    cut = _record_end(buf, fmt, stop)
    while cut == 0 and stop < len(buf):
        stop = min(len(buf), 2 * stop + 64)
        cut = _record_end(buf, fmt, stop)
    return cut


def _quote_parity(data: bytes) -> int:
    """1 when `data` holds an odd number of double quotes (numpy counts a byte about 2.5x faster than bytes.count)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == QUOTE)) & 1


def _last_break(parts: list[bytes], parity: int, quotes: bool) -> tuple[int, int]:
    """(part, index past it) of the last line break in `parts` outside quotes, or (-1, 0) when there is none.

    `parity` is the parity of the quotes in `parts` (which start at a record); with `quotes` False (NDJSON)
    every newline ends a record. Each step looks only at the bytes after the break it tries.
    """
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        has_cr = quotes and b"\r" in part
        end = len(part)
        while True:
            at = part.rfind(b"\n", 0, end)
            if has_cr:
                at = max(at, part.rfind(b"\r", 0, end))
            if quotes:
                parity ^= part.count(b'"', at + 1, end) & 1  # now the parity just past the break
            if at < 0:
                break
            if not parity:
                return i, at + 1
            end = at
    return -1, 0


def _ranges(stream: BinaryStream, head: bytes, eof: bool, fmt: str, target_bytes: int) -> Iterator[list[bytes]]:
    """Ranges of about `target_bytes` as lists of buffers, each range ending at a record's end.

    The blocks are never joined or scanned byte by byte: the parity of the CSV quotes read so far says which
    line breaks are outside quoted fields (RFC 4180 quoting; `parse_range` checks each range's end the way
    the reader reads quotes, so a body quoted otherwise is refused rather than misread).
    """
    quotes = fmt == "csv"
    while len(head) > target_bytes and (cut := _cut(head, fmt, target_bytes)):
        yield [memoryview(head)[:cut]]  # the first block (at most a MiB) holds several small ranges
        head = head[cut:]
    block_size = min(READ_BLOCK, target_bytes)
    parts, size, want = ([head] if head else []), len(head), target_bytes
    parity = _quote_parity(head) if quotes else 0
    while True:
        if size < want and not eof:
            block = stream.read(block_size)
            if block:
                parts.append(block)
                size += len(block)
                if quotes:
                    parity ^= _quote_parity(block)
                continue
            eof = True
        if eof:
            if size:
                yield parts
            return
        index, at = _last_break(parts, parity, quotes)
        if index < 0:
            if size > MAX_RECORD_BYTES:  # the range starts at a record: this one is too long
                kind = "CSV record" if quotes else "NDJSON line"
                raise ReadError("line_too_long", f"a {kind} is longer than {MAX_RECORD_BYTES} bytes")
            want = size + 1  # no record ends yet: read on until one does
            continue
        rest = b"".join([parts[index][at:], *parts[index + 1:]])
        yield [*parts[:index], memoryview(parts[index])[:at]]
        parts, size, want = ([rest] if rest else []), len(rest), target_bytes
        parity = _quote_parity(rest) if quotes else 0
