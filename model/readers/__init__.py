"""Streaming readers: CSV / NDJSON / JSON-array bodies from any binary stream into `pyarrow.Table` chunks, and
Parquet files by row groups (`model.readers.parquet`).

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

Modules: `source` (the byte source), `chunks` (ReadError, Chunk, assembly), `column_types` (typing), one module
per format (`csv`, `ndjson`, `json_array`, `parquet`), and `jsontext` (the JSON parse every JSON reader shares).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from core.formats import extensions, format_for_path
from model.readers.chunks import Chunk, Piece, ReadError, assemble, check_columns
from model.readers.column_types import TypeColumn, finish, type_ident, type_text, type_text_ident, type_values
from model.readers.csv import csv_pieces
from model.readers.json_array import json_pieces
from model.readers.ndjson import ndjson_pieces
from model.readers.source import MAX_RECORD_BYTES, READ_BLOCK, BinaryStream, Source
from model.schema import ROW_COLUMN


@dataclass(frozen=True, slots=True)
class Reader:
    """A streaming format: its parser (source, required, kept columns -> pieces) and how it types columns."""

    pieces: Callable[[Source, list[str], list[str]], Iterator[Piece]]
    type_column: TypeColumn
    type_ident: TypeColumn
    header: bool  # whether the required columns are always checked (a CSV header is part of every range)


READERS: dict[str, Reader] = {
    "csv": Reader(csv_pieces, type_text, type_text_ident, header=True),
    "ndjson": Reader(ndjson_pieces, type_values, type_ident, header=False),
    "json": Reader(json_pieces, type_values, type_ident, header=False),
}
FORMATS = tuple(READERS)


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
    reader = READERS.get(fmt)
    if reader is None:
        raise ReadError("unsupported_format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    if passthrough == ROW_COLUMN:
        raise ReadError("invalid_passthrough", f"the passthrough column cannot be {ROW_COLUMN!r}: results carry it")
    # the passthrough column is required like the model's columns: an id column the body lacks is a mistake
    keep = list(dict.fromkeys([*columns, *([passthrough] if passthrough else [])]))
    ident = passthrough if passthrough and passthrough not in columns else None
    typed = partial(finish, reader.type_column, reader.type_ident, ident=ident)
    required = keep if check_first_record or reader.header else []
    return assemble(reader.pieces(Source(stream, max_bytes), required, keep), chunk_rows, keep, typed)


__all__ = [
    "FORMATS",
    "MAX_RECORD_BYTES",
    "READERS",
    "READ_BLOCK",
    "ROW_COLUMN",
    "BinaryStream",
    "Chunk",
    "ReadError",
    "Reader",
    "check_columns",
    "format_from_path",
    "iter_chunks",
]
