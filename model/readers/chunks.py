"""What every reader shares: `ReadError`, the `Chunk` it yields, the required-columns check, and the assembly of
parsers' pieces into chunks of a fixed number of records, typed by the format's rules."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from model.errors import PredictqError, RowError


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



def check_columns(names: Collection[str], required: Iterable[str], where: str, *, line: int | None = None) -> None:
    """Raise `missing_columns` naming the required columns that `names` (a header, a record, a schema) lacks."""
    missing = [c for c in required if c not in names]
    if missing:
        message = f"required columns missing from {where}: {', '.join(missing)}"
        raise ReadError("missing_columns", message, line=line, missing=missing)


@dataclass(slots=True)
class Piece:
    """Consecutive records from a parser: kept rows' indices and raw values, failed rows, records consumed."""

    rows: np.ndarray  # int64 record indices of the kept rows, increasing
    values: dict[str, Any]  # column -> list of Python values or a pyarrow string array, aligned with rows
    errors: list[RowError] = field(default_factory=list)
    end: int = 0  # index one past the last record this piece covers


Finish = Callable[[dict[str, Any], np.ndarray, list[str]], tuple[pa.Table, list[RowError]]]


def assemble(pieces: Iterator[Piece], chunk_rows: int, keep: list[str], finish: Finish) -> Iterator[Chunk]:
    """Cut the parsers' pieces at multiples of `chunk_rows` records and type each chunk's columns."""
    held: list[Piece] = []
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


def _split(piece: Piece, boundary: int) -> tuple[Piece, Piece]:
    """The records of `piece` before `boundary`, and the rest."""
    cut = int(np.searchsorted(piece.rows, boundary))
    head = Piece(piece.rows[:cut], {k: v[:cut] for k, v in piece.values.items()}, [], boundary)
    tail = Piece(piece.rows[cut:], {k: v[cut:] for k, v in piece.values.items()}, [], piece.end)
    for error in piece.errors:
        (head if error.row < boundary else tail).errors.append(error)
    return head, tail


def _chunk(pieces: list[Piece], start: int, end: int, keep: list[str], finish: Finish) -> Chunk:
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

