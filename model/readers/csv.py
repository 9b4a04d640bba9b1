"""The CSV reader: whole records cut from the byte source a block at a time and parsed by pyarrow as text.

Every kept column is read as text and typed per chunk (see `column_types`); the header must name every required
column, a record with the wrong number of fields is a row error.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from model.errors import RowError
from model.readers.chunks import Piece, ReadError, check_columns
from model.readers.source import MAX_RECORD_BYTES, Source, long_line_at

QUOTE, _LF, _CR = ord('"'), ord("\n"), ord("\r")
_FIELD_EDGE = np.array([ord(","), _LF, _CR, QUOTE], dtype=np.uint8)  # bytes next to a well-placed quote
_CSV_EVENT = re.compile(rb'"|[\r\n]')
LINE_END = re.compile(rb"\r\n?|\n")  # the line endings pyarrow accepts
_CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "-nan", "null", "NULL"]


def csv_pieces(source: Source, required: list[str], keep: list[str]) -> Iterator[Piece]:
    """Parse CSV a block of whole records at a time with pyarrow, every kept column as text.

    Blocks are cut here, not by pyarrow's streaming reader, because that one reads many blocks ahead on a
    background thread: cutting ourselves bounds memory to one block and stops at max_bytes at once.
    """
    carry, names = _csv_header(source, required)
    options = _CsvOptions(names, keep)  # the header check made sure every kept column is in it
    done = 0
    while True:
        data = carry if source.eof else carry + source.read()
        cut = len(data) if source.eof else last_record_end(data)
        block, carry = data[:cut], data[cut:]
        if len(carry) > MAX_RECORD_BYTES:
            line = source.lines - carry.count(b"\n") + 1
            raise ReadError("line_too_long", f"a CSV record is longer than {MAX_RECORD_BYTES} bytes", line=line)
        if (at := long_line_at(block)) is not None:
            line = source.lines - data.count(b"\n") + block.count(b"\n", 0, at) + 1
            raise ReadError("line_too_long", f"a CSV line is longer than {MAX_RECORD_BYTES} bytes", line=line)
        if block.lstrip(b"\r\n"):  # (lstrip returns the block itself, uncopied, when it starts with data)
            piece = _csv_block(block, options, done)
            done = piece.end
            yield piece
        if source.eof and not carry:
            break
    if done == 0:
        raise ReadError("empty", "the CSV body has a header but no records")


def last_record_end(data: bytes, stop: int | None = None) -> int:
    """Index just past the last line break before `stop` that ends a record (0 if none), reading quotes as
    pyarrow does."""
    end = max(data.rfind(b"\n", 0, stop), data.rfind(b"\r", 0, stop)) + 1
    if end == 0 or data.find(b'"', 0, end) < 0:
        return end
    raw = np.frombuffer(data, dtype=np.uint8, count=end)
    quotes = np.flatnonzero(raw == QUOTE)
    openers, closers = quotes[0::2], quotes[1::2]
    # Counting quotes is exact when each opening quote starts a field and each closing one ends it (RFC 4180);
    # a stray quote inside a field (`5" pipe`, `ab"c`) is text to pyarrow, so such blocks take the exact walk.
    if not (np.isin(raw[openers[openers > 0] - 1], _FIELD_EDGE).all() and np.isin(raw[closers + 1], _FIELD_EDGE).all()):
        return _walk_record_end(data, end)
    if len(quotes) % 2 == 0:
        return end
    breaks = np.flatnonzero((raw == _LF) | (raw == _CR))
    outside = breaks[np.searchsorted(quotes, breaks) % 2 == 0]
    return int(outside[-1]) + 1 if len(outside) else 0


def _walk_record_end(data: bytes, end: int) -> int:
    """`last_record_end` the slow, exact way: pyarrow's quoting rules applied quote by quote."""
    last = 0
    quoted = False
    escaped = -1  # position of the second quote of a `""` pair inside quotes
    for match in _CSV_EVENT.finditer(data, 0, end):
        position = match.start()
        if position == escaped:
            continue
        if match.group() != b'"':
            if not quoted:
                last = position + 1
        elif quoted:
            if data[position + 1 : position + 2] == b'"':
                escaped = position + 1
            else:
                quoted = False
        else:
            quoted = position == 0 or data[position - 1] in b",\r\n"  # a quote opens only at a field's start
    return last


@dataclass(frozen=True, slots=True)
class _CsvOptions:
    """The header's column names and the kept ones (all of them in the header)."""

    names: list[str]
    kept: list[str]


def _csv_block(block: bytes, options: _CsvOptions, first: int) -> Piece:
    """Parse whole CSV records; lines with the wrong number of fields become row errors."""
    errors: list[RowError] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # on one thread pyarrow numbers the block's records from 1, blank lines not counted
        message = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        errors.append(RowError(first + row.number - 1, None, message))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(block),
            read_options=pacsv.ReadOptions(column_names=options.names, use_threads=False, block_size=len(block) + 1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                include_columns=options.kept,
                column_types={c: pa.string() for c in options.kept},
                null_values=_CSV_NULLS,
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ReadError("malformed", f"the CSV body cannot be parsed: {exc}") from None
    end = first + table.num_rows + len(errors)
    failed = np.asarray([e.row for e in errors], dtype=np.int64)
    rows = np.setdiff1d(np.arange(first, end, dtype=np.int64), failed, assume_unique=True)
    return Piece(rows, {c: table.column(c) for c in options.kept}, errors, end)


def _csv_header(source: Source, required: list[str]) -> tuple[bytes, list[str]]:
    """Read up to the end of the header line; return the bytes after it and the column names."""
    data = b""
    while True:
        data = data.lstrip(b"\r\n")  # blank lines before the header, as pyarrow skips blank lines
        end = LINE_END.search(data)
        if end or source.eof:
            break
        if len(data) > MAX_RECORD_BYTES:
            raise ReadError("line_too_long", f"the CSV header is longer than {MAX_RECORD_BYTES} bytes", line=1)
        data += source.read()
    if not data:
        raise ReadError("empty", "the body is empty: no CSV header")
    line, rest = (data[: end.start()], data[end.end() :]) if end else (data, b"")
    text = line.decode("utf-8")
    try:
        names = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ReadError("malformed", f"the CSV header cannot be parsed: {exc}", line=1) from None
    _check_names(names, required, text)
    return rest, names


def _check_names(names: list[str], required: list[str], header: str) -> None:
    """Raise for duplicate or missing required columns, recognising a header split by ';' or tabs."""
    duplicates = sorted(name for name, count in Counter(names).items() if name and count > 1)
    if duplicates:
        raise ReadError("duplicate_columns", f"the header repeats columns: {', '.join(duplicates)}", line=1)
    try:
        check_columns(names, required, "the header", line=1)
    except ReadError:
        for delimiter, label in ((";", "semicolon"), ("\t", "tab")):
            if delimiter in header and all(c in header.split(delimiter) for c in required):
                message = f"the CSV header looks {label}-separated; send comma-separated values"
                raise ReadError("delimiter", message, line=1) from None
        raise

