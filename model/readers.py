"""Streaming readers: CSV / NDJSON / JSON-array bodies from any binary stream into `pyarrow.Table` chunks.

A reader holds at most about one chunk of kept columns plus one read block, whatever the size of the input.
Only the requested columns (and an optional passthrough column) are kept; values are typed per chunk:
a column whose values are all numbers becomes float64, otherwise strings (numbers mixed with strings become
their exact text: the CSV text, or Python's shortest repr for JSON numbers); missing is null. Structurally
impossible values (a list, object or boolean where a scalar belongs; a number that is not finite) make a
`RowError` naming the column, and that record is dropped. Whole-body problems raise `ReadError`.
NaN (JSON literal `NaN`, CSV `NaN`/`nan`) means missing; `Infinity`, `-Infinity` and numbers that overflow
float64 (`1e400`) are row errors ("not a finite number").
The passthrough (client id) column is typed on its own and never as float64, which would turn 7 into 7.0 and
lose digits past 2**53: int64 when every value of the chunk is an integer that fits (in CSV: written exactly
as int64 prints it, so `007` stays text), otherwise the exact text. The header or first record must name it,
as it must name every required column.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.formats import extensions, format_for_path
from model.errors import PredictqError, RowError

FORMATS = ("csv", "ndjson", "json")
READ_BLOCK = 1 << 20  # bytes per read from the client stream
MAX_RECORD_BYTES = 1 << 20  # one CSV line, NDJSON line or JSON-array element may not exceed this
ROW_COLUMN = "row"
_BOM = codecs.BOM_UTF8
_QUOTE, _LF, _CR = ord('"'), ord("\n"), ord("\r")
_FIELD_EDGE = np.array([ord(","), _LF, _CR, _QUOTE], dtype=np.uint8)  # bytes next to a well-placed quote
_CSV_EVENT = re.compile(rb'"|[\r\n]')
_SAMPLE = 64  # cells tried before casting a whole CSV column to numbers
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_INT_DIGITS = 4000  # under Python's default int <-> text limit (4300), which json.loads would raise past
_LINE_END = re.compile(rb"\r\n?|\n")  # the line endings pyarrow accepts
_CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "-nan", "null", "NULL"]


class ReadError(PredictqError):
    """A body that cannot be read as a whole; `code` is stable, `line`/`column` are 1-based when known."""

    def __init__(
        self,
        code: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        *,
        missing: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.missing = missing  # the required columns absent, for `missing_columns`

    def as_dict(self) -> dict[str, Any]:
        """The error as plain data (None fields left out), for an API error's `details`."""
        fields = {"code": self.code, "message": self.message, "line": self.line, "column": self.column}
        return {k: v for k, v in (fields | {"missing": self.missing}).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to `chunk_rows` consecutive input records: the readable ones in `table`, the others in `errors`."""

    table: pa.Table
    errors: list[RowError]
    first_row: int
    rows: int


class BinaryStream(Protocol):
    """Anything with `read(n) -> bytes` (a file, a request body, a multipart part)."""

    def read(self, n: int = -1, /) -> bytes: ...


def format_from_path(path: str | Path, allowed: Sequence[str] = FORMATS) -> str:
    """The format of a file name by its extension, one of `allowed` (the streaming readers' by default)."""
    fmt = format_for_path(path)
    if fmt not in allowed:
        known = extensions(tuple(allowed))
        use = f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else known[0]
        raise ReadError("unsupported_format", f"cannot tell the format of {str(path)!r}: use {use}")
    return fmt


def iter_chunks(
    stream: BinaryStream,
    fmt: str,
    *,
    columns: Sequence[str],
    chunk_rows: int,
    passthrough: str | None = None,
    max_bytes: int | None = None,
    check_first_record: bool = True,
) -> Iterator[Chunk]:
    """Chunks of `chunk_rows` records (the last one shorter); see the module docstring.

    Arguments are checked at once; the body is read only as the chunks are consumed. `check_first_record`
    False reads a later part of a body whose first record was checked already (JSON keys are not required).
    """
    if fmt not in FORMATS:
        raise ReadError("unsupported_format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    if passthrough == ROW_COLUMN:
        raise ReadError("invalid_passthrough", f"the passthrough column cannot be {ROW_COLUMN!r}: results carry it")
    # the passthrough column is required like the model's columns: an id column the body lacks is a mistake
    keep = list(dict.fromkeys([*columns, *([passthrough] if passthrough else [])]))
    ident = passthrough if passthrough and passthrough not in columns else None
    parse = {"csv": _csv_pieces, "ndjson": _ndjson_pieces, "json": _json_pieces}[fmt]
    finish = (partial(_finish, _type_text, _type_text_ident, ident=ident) if fmt == "csv"
              else partial(_finish, _type_values, _type_ident, ident=ident))
    required = keep if check_first_record or fmt == "csv" else []
    return _assemble(parse(_Source(stream, max_bytes), required, keep), chunk_rows, keep, finish)


# --- the byte source: size limit, BOM, UTF-8 check, line counting -------------------------------------


class _Source:
    """The client stream read in full blocks, BOM removed, checked for size (each read) and UTF-8 as it goes."""

    def __init__(self, stream: BinaryStream, max_bytes: int | None) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._started = False
        self.offset = 0  # bytes of the body consumed so far
        self.lines = 0  # newlines handed out so far
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (fewer only at the end of the stream)."""
        n = READ_BLOCK if n is None or n < 0 else n
        parts: list[bytes] = []
        got = 0
        while got < n and not self.eof:
            part = self._stream.read(n - got)
            if not part:
                self.eof = True
                break
            parts.append(part)
            got += len(part)
            if self._max_bytes is not None and self.offset + got > self._max_bytes:
                raise ReadError("too_large", f"the body is larger than the limit of {self._max_bytes} bytes")
        data = b"".join(parts)
        if not self._started:
            self._started = True
            # the first read is a full block (or the whole body), so a BOM is never split
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self.offset = len(_BOM)  # offsets and max_bytes count the body's bytes as sent
        self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        """Check that the bytes about to be handed out are UTF-8 (so far); count them and their lines."""
        pending = self._decoder.getstate()[0]
        try:
            if pending or not data.isascii():  # ASCII, the usual body, is UTF-8 as it is (0.4 s per GB saved)
                self._decoder.decode(data, final=self.eof)
        except UnicodeDecodeError as exc:
            at = self.offset - len(pending) + exc.start
            line = self.lines + 1 + data.count(b"\n", 0, max(0, exc.start - len(pending)))
            raise ReadError("not_utf8", f"the body is not valid UTF-8 at byte offset {at}", line=line) from None
        self.offset += len(data)
        self.lines += _newlines(data, 0, len(data))


def _newlines(data: bytes, start: int, stop: int) -> int:
    """Count of b"\\n" in data[start:stop] (numpy is about 3x faster than bytes.count for one byte)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=stop - start, offset=start) == _LF))


# --- pieces and chunk assembly -----------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    """Consecutive records from a parser: kept rows' indices and raw values, failed rows, records consumed."""

    rows: np.ndarray  # int64 record indices of the kept rows, increasing
    values: dict[str, Any]  # column -> list of Python values or a pyarrow string array, aligned with rows
    errors: list[RowError] = field(default_factory=list)
    end: int = 0  # index one past the last record this piece covers


_Finish = Callable[[dict[str, Any], np.ndarray, list[str]], tuple[pa.Table, list[RowError]]]


def _assemble(pieces: Iterator[_Piece], chunk_rows: int, keep: list[str], finish: _Finish) -> Iterator[Chunk]:
    """Cut the parsers' pieces at multiples of `chunk_rows` records and type each chunk's columns."""
    held: list[_Piece] = []
    start = 0  # first record of the chunk being filled
    end = 0
    for piece in pieces:
        end = piece.end
        while end >= start + chunk_rows:
            boundary = start + chunk_rows
            head, piece = _split(piece, boundary)
            held.append(head)
            yield _chunk(held, start, boundary, keep, finish)
            held, start = [], boundary
        held.append(piece)
    if end > start:
        yield _chunk(held, start, end, keep, finish)


def _split(piece: _Piece, boundary: int) -> tuple[_Piece, _Piece]:
    """The records of `piece` before `boundary`, and the rest."""
    cut = int(np.searchsorted(piece.rows, boundary))
    head = _Piece(piece.rows[:cut], {k: v[:cut] for k, v in piece.values.items()}, [], boundary)
    tail = _Piece(piece.rows[cut:], {k: v[cut:] for k, v in piece.values.items()}, [], piece.end)
    for error in piece.errors:
        (head if error.row < boundary else tail).errors.append(error)
    return head, tail


def _chunk(pieces: list[_Piece], start: int, end: int, keep: list[str], finish: _Finish) -> Chunk:
    """One chunk from the pieces covering records [start, end)."""
    rows = np.concatenate([p.rows for p in pieces])
    values = {c: _concat([p.values[c] for p in pieces]) for c in keep}
    errors = [e for p in pieces for e in p.errors]
    table, value_errors = finish(values, rows, keep)
    errors = sorted(errors + value_errors, key=lambda e: e.row)
    return Chunk(table=table, errors=errors, first_row=start, rows=end - start)


def _concat(parts: list[Any]) -> Any:
    """Join list parts or pyarrow array parts of one column."""
    if isinstance(parts[0], list):
        return list(chain.from_iterable(parts))
    return pa.concat_arrays([p for part in parts for p in _chunks_of(part)])


def _chunks_of(array: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(array.chunks) if isinstance(array, pa.ChunkedArray) else [array]


# --- typing of a chunk's columns ---------------------------------------------------------------------


_TypeColumn = Callable[[Any, np.ndarray, str, np.ndarray], tuple[pa.Array, list[RowError]]]


def _finish(
    type_column: _TypeColumn, type_ident: _TypeColumn, values: dict[str, Any], rows: np.ndarray, present: list[str],
    ident: str | None = None,
) -> tuple[pa.Table, list[RowError]]:
    """Type each kept column of a chunk (the id column by its own rule); rows with a bad value are dropped."""
    bad = np.zeros(len(rows), dtype=bool)
    errors: list[RowError] = []
    typed: dict[str, pa.Array] = {}
    for name in present:
        typed[name], errors_here = (type_ident if name == ident else type_column)(values[name], rows, name, bad)
        errors.extend(errors_here)
    return _table(rows, typed, present, bad), errors


def _type_text(text: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """CSV text: a column whose every non-null cell parses as a number becomes float64, else stays text."""
    numbers = _as_numbers(text)
    return (text, []) if numbers is None else _finite(numbers, rows, name, bad)


def _type_text_ident(text: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """A CSV id column: int64 or its exact text (see `_ident_from_text`); never a row error."""
    return _ident_from_text(text), []


def _as_numbers(text: pa.Array) -> pa.Array | None:
    """The text column parsed as float64, or None if any cell is not a number."""
    try:
        # a failed cast of a whole text column is slow: a sample decides most text columns at once
        pc.cast(text.drop_null()[:_SAMPLE], pa.float64())
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        return None


def _ident_from_text(text: pa.Array) -> pa.Array:
    """A CSV id column as int64 when every cell is an integer written as int64 prints it, else its exact text."""
    try:
        numbers = pc.cast(text, pa.int64())
    except pa.ArrowInvalid:
        return text
    # the round trip keeps `007`, `-0` and the like as the text the client sent
    return numbers if pc.all(pc.equal(pc.cast(numbers, pa.string()), text)).as_py() else text


def _finite(numbers: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """NaN becomes null; an infinite value is a row error (marked in `bad`, first column per row wins)."""
    data = numbers.to_numpy(zero_copy_only=False)  # nulls come back as NaN
    infinite = np.isinf(data)
    errors = [RowError(int(r), name, "not a finite number") for r in rows[infinite & ~bad]]
    bad |= infinite
    return pa.array(data, type=pa.float64(), mask=np.isnan(data)), errors


def _type_values(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """One column's Python values as float64 or strings, with row errors for values that cannot be scalars."""
    try:
        array = pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None:
        # pyarrow reads `true` as 1 once a number came before it: a boolean anywhere takes the path that
        # makes it a row error, as it is in a chunk's first record and on /predict.
        numeric = pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
        if numeric and operator.countOf(map(type, items), bool):
            return _type_mixed(items, rows, name, bad)
        if numeric or pa.types.is_null(array.type):
            return _finite(array.cast(pa.float64(), safe=False), rows, name, bad)
        if pa.types.is_string(array.type):
            return array, []
    return _type_mixed(items, rows, name, bad)


def _type_mixed(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """The slow path for a column mixing kinds of value (only chunks holding such values pay for it)."""
    cleaned, errors = _scalars(items, rows, name, bad, exact_ints=False)
    if any(isinstance(v, str) for v in cleaned):
        return _texts(cleaned), errors
    return pa.array([None if v is None else float(v) for v in cleaned], pa.float64()), errors


def _type_ident(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """The passthrough column: int64 when every value is an integer that fits, else exact text; never float64."""
    try:
        array = pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None and (pa.types.is_int64(array.type) or pa.types.is_string(array.type)):
        return array, []
    # floats, huge integers, nulls only, or mixed kinds: rare for an id, so a Python pass is fine here
    cleaned, errors = _scalars(items, rows, name, bad, exact_ints=True)
    present = [v for v in cleaned if v is not None]
    if present and all(type(v) is int and _INT64_MIN <= v <= _INT64_MAX for v in present):
        return pa.array(cleaned, pa.int64()), errors
    return _texts(cleaned), errors


def _scalars(
    items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray, *, exact_ints: bool
) -> tuple[list[Any], list[RowError]]:
    """The values with NaN and unusable values as None, and a row error for each unusable one (first per row)."""
    errors: list[RowError] = []
    cleaned: list[Any] = []
    for i, item in enumerate(items):
        problem = _scalar_problem(item, exact_ints=exact_ints)
        if problem:
            if not bad[i]:
                errors.append(RowError(int(rows[i]), name, problem))
                bad[i] = True
            item = None
        elif isinstance(item, float) and math.isnan(item):
            item = None
        cleaned.append(item)
    return cleaned, errors


def _texts(values: list[Any]) -> pa.Array:
    """Values as strings: text as is, numbers as Python's exact repr (integers digit for digit)."""
    return pa.array([v if v is None or isinstance(v, str) else repr(v) for v in values], pa.string())


def _scalar_problem(item: Any, *, exact_ints: bool = False) -> str | None:
    """Why a JSON value cannot stand in a scalar column, or None if it can (`exact_ints`: any integer can)."""
    if isinstance(item, bool):
        return "a boolean where a number or text belongs"
    if isinstance(item, dict):
        return "an object where a number or text belongs"
    if isinstance(item, list):
        return "a list where a number or text belongs"
    if exact_ints and isinstance(item, int):
        return None
    if isinstance(item, float | int) and math.isinf(_as_float(item)):
        return "not a finite number"
    return None


def _as_float(number: float | int) -> float:
    """The number as a float, infinite when it is beyond float64's range (Python's json reads huge ints)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf


def _table(rows: np.ndarray, typed: dict[str, pa.Array], present: list[str], bad: np.ndarray) -> pa.Table:
    """The chunk's table: `row` plus the kept columns, without the rows that had value errors."""
    table = pa.table({ROW_COLUMN: pa.array(rows, pa.int64()), **{c: typed[c] for c in present}})
    return table.filter(pa.array(~bad)) if bad.any() else table


def _long_line_at(block: bytes, limit: int = MAX_RECORD_BYTES) -> int | None:
    """Offset of the first line in `block` longer than `limit` bytes, or None.

    Steps back from `limit` bytes ahead to the last line break in reach, so it costs one short backward search
    per `limit` bytes of ordinary lines, not one per line.
    """
    start, size = 0, len(block)
    while size - start > limit:
        brk = max(block.rfind(b"\n", start, start + limit + 1), block.rfind(b"\r", start, start + limit + 1))
        if brk < 0:
            return start
        start = brk + 1
    return None


# --- CSV ---------------------------------------------------------------------------------------------


def _csv_pieces(source: _Source, required: list[str], keep: list[str]) -> Iterator[_Piece]:
    """Parse CSV a block of whole records at a time with pyarrow, every kept column as text.

    Blocks are cut here, not by pyarrow's streaming reader, because that one reads many blocks ahead on a
    background thread: cutting ourselves bounds memory to one block and stops at max_bytes at once.
    """
    carry, names = _csv_header(source, required)
    options = _CsvOptions(names, keep)  # the header check made sure every kept column is in it
    done = 0
    while True:
        data = carry if source.eof else carry + source.read(READ_BLOCK)
        cut = len(data) if source.eof else _last_record_end(data)
        block, carry = data[:cut], data[cut:]
        if len(carry) > MAX_RECORD_BYTES:
            line = source.lines - carry.count(b"\n") + 1
            raise ReadError("line_too_long", f"a CSV record is longer than {MAX_RECORD_BYTES} bytes", line=line)
        if (at := _long_line_at(block)) is not None:
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


def _last_record_end(data: bytes, stop: int | None = None) -> int:
    """Index just past the last line break before `stop` that ends a record (0 if none), reading quotes as
    pyarrow does."""
    end = max(data.rfind(b"\n", 0, stop), data.rfind(b"\r", 0, stop)) + 1
    if end == 0 or data.find(b'"', 0, end) < 0:
        return end
    raw = np.frombuffer(data, dtype=np.uint8, count=end)
    quotes = np.flatnonzero(raw == _QUOTE)
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
    """`_last_record_end` the slow, exact way: pyarrow's quoting rules applied quote by quote."""
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


def _csv_block(block: bytes, options: _CsvOptions, first: int) -> _Piece:
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
    return _Piece(rows, {c: table.column(c) for c in options.kept}, errors, end)


def _csv_header(source: _Source, required: list[str]) -> tuple[bytes, list[str]]:
    """Read up to the end of the header line; return the bytes after it and the column names."""
    data = b""
    while True:
        data = data.lstrip(b"\r\n")  # blank lines before the header, as pyarrow skips blank lines
        end = _LINE_END.search(data)
        if end or source.eof:
            break
        if len(data) > MAX_RECORD_BYTES:
            raise ReadError("line_too_long", f"the CSV header is longer than {MAX_RECORD_BYTES} bytes", line=1)
        data += source.read(READ_BLOCK)
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
    missing = [c for c in required if c not in names]
    if not missing:
        return
    for delimiter, label in ((";", "semicolon"), ("\t", "tab")):
        if delimiter in header and not [c for c in required if c not in header.split(delimiter)]:
            raise ReadError("delimiter", f"the CSV header looks {label}-separated; send comma-separated values", line=1)
    message = f"required columns missing from the header: {', '.join(missing)}"
    raise ReadError("missing_columns", message, line=1, missing=missing)


# --- NDJSON ------------------------------------------------------------------------------------------


def _ndjson_pieces(source: _Source, required: list[str], keep: list[str]) -> Iterator[_Piece]:
    """Parse NDJSON a block of whole lines at a time; a bad line is a row error, blank lines are skipped."""
    carry = b""
    done = 0
    checked = False  # whether a readable record has shown the required keys yet
    while not source.eof:
        block = carry + source.read(READ_BLOCK)
        cut = block.rfind(b"\n") + 1 if not source.eof else len(block)
        carry = block[cut:]
        if len(carry) > MAX_RECORD_BYTES:
            message = f"an NDJSON line is longer than {MAX_RECORD_BYTES} bytes"
            raise ReadError("line_too_long", message, line=source.lines + 1)
        if (at := _long_line_at(block, MAX_RECORD_BYTES)) is not None and at < cut:
            line = source.lines - block.count(b"\n") + block.count(b"\n", 0, at) + 1
            raise ReadError("line_too_long", f"an NDJSON line is longer than {MAX_RECORD_BYTES} bytes", line=line)
        piece = _ndjson_block(block[:cut], done, keep, None if checked else required)
        checked = checked or len(piece.rows) > 0
        done = piece.end
        yield piece
    if done == 0:
        raise ReadError("empty", "the body has no NDJSON records")


def _ndjson_block(block: bytes, first: int, keep: list[str], required: list[str] | None) -> _Piece:
    """One block of whole lines as a piece; `required` keys are checked on its first readable record."""
    # blank lines are not records; dropping them first keeps such blocks on the fast path below
    lines = [line for line in block.split(b"\n") if line.strip()] if block.strip() else []
    parsed = _kept_values(lines, keep) if required is None else None
    if parsed is not None:
        return _Piece(np.arange(first, first + len(lines), dtype=np.int64), parsed, [], first + len(lines))
    values, errors, rows = _parse_lines(lines, first, keep, required)
    return _Piece(np.asarray(rows, dtype=np.int64), values, errors, first + len(lines))


def _kept_values(lines: list[bytes], keep: list[str]) -> dict[str, list[Any]] | None:
    """The kept keys' values when every line is a JSON object, else None.

    Each record is dropped as soon as its kept values are taken: holding a block's worth of parsed records
    first makes this step about twice as slow.
    """
    try:
        values = [tuple(map(orjson.loads(line).get, keep)) for line in lines]  # only dicts have .get
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return dict(zip(keep, map(list, zip(*values, strict=True)), strict=True)) if values else {c: [] for c in keep}


def _parse_lines(
    lines: list[bytes], first: int, keep: list[str], required: list[str] | None
) -> tuple[dict[str, list[Any]], list[RowError], list[int]]:
    """Parse lines one by one: kept values of the objects, a row error for each other line."""
    records: list[tuple[Any, ...]] = []
    errors: list[RowError] = []
    rows: list[int] = []
    for index, line in enumerate(lines, start=first):
        record, problem = _parse_record(line)
        if problem is not None:
            errors.append(RowError(index, None, problem))
            continue
        if required is not None:
            _check_keys(record, required)
            required = None
        records.append(tuple(map(record.get, keep)))
        rows.append(index)
    columns = map(list, zip(*records, strict=True)) if records else ([] for _ in keep)
    return dict(zip(keep, columns, strict=True)), errors, rows


def _parse_record(text: bytes) -> tuple[dict | None, str | None]:
    """One JSON record, or why it is unreadable; NaN/Infinity literals are understood (see module doc)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        value = loads_lenient(text)
        if value is None:
            return None, f"not valid JSON: {exc.msg}"
    if type(value) is not dict:
        return None, "not a JSON object"
    return value, None


def loads_lenient(text: bytes) -> Any:
    """Python's parser for text orjson rejects: it also reads NaN, Infinity, 1e400 and integer literals of any
    length (None if it fails too)."""
    try:
        value = json.loads(text, parse_int=_parse_int)
        json.dumps(value, ensure_ascii=False).encode()  # rejects lone surrogates (`"\\ud800"`), as orjson does
    except (ValueError, RecursionError):
        return None
    return value


def _parse_int(text: str) -> int | float:
    """An integer literal; past Python's int-to-text digit limit it is far past float64: infinity, a row error."""
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def _check_keys(record: dict, required: list[str]) -> None:
    """The first readable record must carry every required column."""
    missing = [c for c in required if c not in record]
    if missing:
        message = f"required columns missing from the first record: {', '.join(missing)}"
        raise ReadError("missing_columns", message, missing=missing)


def _columns_of(records: list[dict], keep: list[str]) -> dict[str, list[Any]]:
    """Column-wise values of the kept keys (None where a record lacks a key)."""
    return {c: [r.get(c) for r in records] for c in keep}


# --- JSON array ---------------------------------------------------------------------------------------


def _json_pieces(source: _Source, required: list[str], keep: list[str]) -> Iterator[_Piece]:
    """Parse a JSON array (or a single object) without loading it whole: see `_JsonArray`."""
    yield from _JsonArray(source, required, keep).pieces()


_WS = b" \t\r\n"
_AFTER_OBJECT = re.compile(rb"[ \t\r\n]*,")
# a string (possibly cut short by the end of the buffer) or one structural character
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},]', re.S)
_ELEMENT_GAP = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
_CANDIDATES = 4  # boundaries tried from the end of a block before falling back to the exact scanner
MAX_DEPTH = 512


class _JsonArray:
    """Streams a top-level JSON array: cut each block after a `}` followed by a comma, parse the cut at once.

    A cut inside a string or inside a nested value cannot make `[` + cut + `]` valid JSON (the string or a
    bracket stays open), so a successful parse proves the cut sat between two top-level elements; when no
    candidate parses, a token scanner finds the true last top-level comma.
    """

    def __init__(self, source: _Source, required: list[str], keep: list[str]) -> None:
        self.source = source
        self.required = required
        self.keep = keep
        self.buf = b""
        self.line = 1  # line number of buf[0]
        self.column = 1  # 1-based character column of buf[0]
        self.done = 0
        self.checked = False

    def pieces(self) -> Iterator[_Piece]:
        """Pieces of consecutive elements, then the last ones with the closing bracket."""
        first = self._first_token()
        if first == b"{":
            yield self._piece([self._loads(self._read_rest(), whole=True)])
            return
        if first != b"[":
            raise self._malformed(0, "a JSON body must be an array of objects or one object")
        self._advance(1)
        while (piece := self._next_piece()) is not None:
            yield piece
        rest = self._read_rest()
        if self.done and rest.lstrip(_WS).startswith(b"]"):
            raise self._malformed(0, "a comma before the closing bracket")
        values = self._loads(b"[" + rest, whole=False)
        if values:
            yield self._piece(values)
        if self.done == 0:
            raise ReadError("empty", "the JSON array is empty")

    def _first_token(self) -> bytes:
        """The first non-blank byte of the body (raising `empty` when there is none)."""
        while True:
            stripped = self.buf.lstrip(_WS)
            self._advance(len(self.buf) - len(stripped))  # blanks are dropped as they come: none are held
            if stripped or self.source.eof:
                break
            self.buf += self.source.read(READ_BLOCK)
        if not stripped:
            raise ReadError("empty", "the body is empty")
        return stripped[:1]

    def _next_piece(self) -> _Piece | None:
        """The complete elements at the front of the buffer (parsed values freed on return), or None at the tail."""
        if self.checked and (piece := self._objects_piece()) is not None:
            return piece
        values = self._next_values()
        return None if values is None else self._piece(values)

    def _objects_piece(self) -> _Piece | None:
        """The fast path: the block up to its last `},` split at every `},{` and each object parsed alone.

        Parsing objects one at a time and keeping only their kept values is about twice as fast as parsing
        the block as one array. If every part parses as an object, the parts are exactly the elements: a
        split inside a string or a nested value leaves a part that is not valid JSON. Otherwise None.
        """
        if len(self.buf) < READ_BLOCK and not self.source.eof:
            self.buf += self.source.read(READ_BLOCK - len(self.buf))
        cut = next(self._candidates(), None)
        if cut is None:
            return None
        # NUL cannot appear raw in valid JSON, so it is a safe separator
        parts = _ELEMENT_GAP.sub(b"}\x00{", self.buf[: cut - 1]).split(b"\x00")
        values = _kept_values(parts, self.keep)
        if values is None:
            return None
        if max(map(len, parts)) > MAX_RECORD_BYTES:
            raise self._too_long()
        self._advance(cut)
        first, self.done = self.done, self.done + len(parts)
        return _Piece(np.arange(first, self.done, dtype=np.int64), values, [], self.done)

    def _next_values(self) -> list[Any] | None:
        """The complete elements at the front of the buffer, or None when only the array's tail is left."""
        while True:
            if len(self.buf) < READ_BLOCK and not self.source.eof:
                self.buf += self.source.read(READ_BLOCK - len(self.buf))  # about one block parsed at a time
            for cut in self._candidates():
                try:
                    values = orjson.loads(b"[" + self.buf[: cut - 1] + b"]")
                except orjson.JSONDecodeError:
                    continue
                if len(values) == 1 and cut > MAX_RECORD_BYTES + 1:
                    raise self._too_long()
                self._advance(cut)
                return values
            cut, closed = self._scan()
            if cut is not None:
                values = self._loads(b"[" + self.buf[: cut - 1] + b"]", whole=False)
                self._advance(cut)
                return values
            if closed or self.source.eof:
                return None
            if len(self.buf) > MAX_RECORD_BYTES:
                raise self._too_long()
            self.buf += self.source.read(READ_BLOCK)

    def _candidates(self) -> Iterator[int]:
        """Indices just past `},` (blanks allowed before the comma), from the end of the buffer."""
        end = len(self.buf)
        for _ in range(_CANDIDATES):
            end = self.buf.rfind(b"}", 0, end)
            while end >= 0 and not (match := _AFTER_OBJECT.match(self.buf, end + 1)):
                end = self.buf.rfind(b"}", 0, end)
            if end < 0:
                return
            yield match.end()

    def _scan(self) -> tuple[int | None, bool]:
        """Exact index past the last top-level comma in the buffer, and whether the array's `]` was seen."""
        depth = 0
        last = None
        for token in _TOKEN.finditer(self.buf):
            kind = token.group()[:1]
            if kind in b"[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ReadError("too_deep", f"the JSON body nests deeper than {MAX_DEPTH} levels", line=self.line)
            elif kind in b"]}":
                depth -= 1
                if depth < 0:
                    return last, True
            elif kind == b"," and depth == 0:
                last = token.end()
        return last, False

    def _read_rest(self) -> bytes:
        """The rest of the body, which holds at most one element plus the closing bracket."""
        while not self.source.eof:
            if len(self.buf) > MAX_RECORD_BYTES + READ_BLOCK:
                raise self._too_long()
            self.buf += self.source.read(READ_BLOCK)
        return self.buf

    def _loads(self, text: bytes, *, whole: bool) -> Any:
        """Parse `text` (a body or `[` + part of buf), accepting NaN/Infinity/overflow; else `malformed`."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            value = loads_lenient(text)
            if value is None:
                raise self._malformed(exc.pos - (0 if whole else 1), str(exc.msg)) from None
        return value

    def _piece(self, values: list[Any]) -> _Piece:
        """A piece from parsed elements: objects are records, anything else a row error."""
        records, rows, errors = [], [], []
        for index, value in enumerate(values, start=self.done):
            if type(value) is dict:
                records.append(value)
                rows.append(index)
            else:
                errors.append(RowError(index, None, "not a JSON object"))
        if not self.checked and records:
            _check_keys(records[0], self.required)
            self.checked = True
        self.done += len(values)
        return _Piece(np.asarray(rows, dtype=np.int64), _columns_of(records, self.keep), errors, self.done)

    def _advance(self, n: int) -> None:
        """Drop the first `n` bytes of the buffer, keeping track of line and column."""
        newlines = _newlines(self.buf, 0, n)
        start = self.buf.rfind(b"\n", 0, n) + 1
        width = len(self.buf[start:n].decode("utf-8", "replace"))
        self.line += newlines
        self.column = width + 1 if newlines else self.column + width
        self.buf = self.buf[n:]

    def _malformed(self, pos: int, reason: str) -> ReadError:
        """A `malformed` (or `too_deep`) error at byte `pos` of the buffer, with its line and column."""
        pos = max(0, min(pos, len(self.buf)))
        newlines = self.buf.count(b"\n", 0, pos)
        start = self.buf.rfind(b"\n", 0, pos) + 1
        width = len(self.buf[start:pos].decode("utf-8", "replace"))
        line = self.line + newlines
        column = width + 1 if newlines else self.column + width
        code = "too_deep" if "depth" in reason else "malformed"
        return ReadError(code, f"the JSON body is malformed at line {line}, column {column}: {reason}", line, column)

    def _too_long(self) -> ReadError:
        return ReadError("line_too_long", f"a JSON element is longer than {MAX_RECORD_BYTES} bytes", line=self.line)
