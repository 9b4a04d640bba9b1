"""The NDJSON reader: blocks of whole lines, each line one JSON object (a bad line is a row error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from model.errors import RowError
from model.readers.chunks import Piece, ReadError, check_columns
from model.readers.jsontext import kept_values, parse_record
from model.readers.source import MAX_RECORD_BYTES, Source, long_line_at


def ndjson_pieces(source: Source, required: list[str], keep: list[str]) -> Iterator[Piece]:
    """Parse NDJSON a block of whole lines at a time; a bad line is a row error, blank lines are skipped."""
    carry = b""
    done = 0
    checked = False  # whether a readable record has shown the required keys yet
    while not source.eof:
        block = carry + source.read()
        cut = block.rfind(b"\n") + 1 if not source.eof else len(block)
        carry = block[cut:]
        if len(carry) > MAX_RECORD_BYTES:
            message = f"an NDJSON line is longer than {MAX_RECORD_BYTES} bytes"
            raise ReadError("line_too_long", message, line=source.lines + 1)
        if (at := long_line_at(block, MAX_RECORD_BYTES)) is not None and at < cut:
            line = source.lines - block.count(b"\n") + block.count(b"\n", 0, at) + 1
            raise ReadError("line_too_long", f"an NDJSON line is longer than {MAX_RECORD_BYTES} bytes", line=line)
        piece = _ndjson_block(block[:cut], done, keep, None if checked else required)
        checked = checked or len(piece.rows) > 0
        done = piece.end
        yield piece
    if done == 0:
        raise ReadError("empty", "the body has no NDJSON records")


def _ndjson_block(block: bytes, first: int, keep: list[str], required: list[str] | None) -> Piece:
    """One block of whole lines as a piece; `required` keys are checked on its first readable record."""
    # blank lines are not records; dropping them first keeps such blocks on the fast path below
    lines = [line for line in block.split(b"\n") if line.strip()] if block.strip() else []
    parsed = kept_values(lines, keep) if required is None else None
    if parsed is not None:
        return Piece(np.arange(first, first + len(lines), dtype=np.int64), parsed, [], first + len(lines))
    values, errors, rows = _parse_lines(lines, first, keep, required)
    return Piece(np.asarray(rows, dtype=np.int64), values, errors, first + len(lines))


def _parse_lines(
    lines: list[bytes], first: int, keep: list[str], required: list[str] | None
) -> tuple[dict[str, list[Any]], list[RowError], list[int]]:
    """Parse lines one by one: kept values of the objects, a row error for each other line."""
    records: list[tuple[Any, ...]] = []
    errors: list[RowError] = []
    rows: list[int] = []
    for index, line in enumerate(lines, start=first):
        record, problem = parse_record(line)
        if problem is not None:
            errors.append(RowError(index, None, problem))
            continue
        if required is not None:
            check_columns(record, required, "the first record")
            required = None
        records.append(tuple(map(record.get, keep)))
        rows.append(index)
    columns = map(list, zip(*records, strict=True)) if records else ([] for _ in keep)
    return dict(zip(keep, columns, strict=True)), errors, rows

