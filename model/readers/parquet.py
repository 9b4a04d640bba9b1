"""Parquet uploads: the schema check, row groups grouped into chunks, and a chunk's rows typed as the readers
type CSV and JSON (numbers as float64, text as strings, the id column as int64 or its exact text).

A Parquet file's footer (its schema and row groups) is at its end, so the file is checked once it has arrived
whole. Rows are numbered from each chunk's first row, as for record ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.readers.chunks import Chunk, ReadError, check_columns
from model.readers.column_types import finish, type_ident, type_values
from model.schema import ROW_COLUMN


@dataclass(frozen=True)
class RowGroups:
    """Consecutive row groups `first..last` (inclusive) making one chunk, and their rows."""

    first: int
    last: int
    rows: int

    def text(self) -> str:
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str, rows: int) -> RowGroups:
        first, last = text.split("-")
        return cls(int(first), int(last), rows)


def open_file(source: Any) -> pq.ParquetFile:
    """The Parquet file at `source` (a seekable file), or ReadError `malformed` when it is not one."""
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError("malformed", f"the body is not a Parquet file: {exc}") from None


def check_schema(parquet: pq.ParquetFile, columns: Sequence[str], passthrough: str | None = None) -> None:
    """The file must name every required column (and the id column); ReadError `missing_columns` otherwise."""
    required = dict.fromkeys([*columns, *([passthrough] if passthrough else [])])
    check_columns(set(parquet.schema_arrow.names), required, "the Parquet schema")
    if parquet.metadata.num_rows == 0:
        raise ReadError("empty", "the Parquet file has no rows")


def group_chunks(parquet: pq.ParquetFile, target_bytes: int) -> list[RowGroups]:
    """Consecutive row groups gathered into chunks of about `target_bytes` of uncompressed data each."""
    chunks: list[RowGroups] = []
    meta = parquet.metadata
    first, size, rows = 0, 0, 0
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        size += group.total_byte_size
        rows += group.num_rows
        if size >= target_bytes or index == meta.num_row_groups - 1:
            if rows:
                chunks.append(RowGroups(first, index, rows))
            first, size, rows = index + 1, 0, 0
    return chunks


def read_chunk(parquet: pq.ParquetFile, groups: RowGroups, columns: Sequence[str],
               passthrough: str | None = None) -> Chunk:
    """The chunk's rows (numbered from 0) with the kept columns typed as the readers type them."""
    keep = list(dict.fromkeys([*columns, *([passthrough] if passthrough else [])]))
    ident = passthrough if passthrough and passthrough not in columns else None
    table = parquet.read_row_groups(list(range(groups.first, groups.last + 1)), columns=keep, use_threads=False)
    rows = np.arange(table.num_rows, dtype=np.int64)
    values = {name: table.column(name).combine_chunks() for name in keep}
    typed, errors = finish(_type_arrow, _type_arrow_ident, values, rows, keep, ident=ident)
    return Chunk(table=typed, errors=sorted(errors, key=lambda e: e.row), first_row=0, rows=table.num_rows)


def _type_arrow(array: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[Any]]:
    """A Parquet column: numbers as float64 (a non-finite one a row error), text as is, anything else through
    the JSON typing rules (booleans and nested values are row errors)."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        return _type_values_numeric(array.cast(pa.float64()), rows, name, bad)
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.float64()), []
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    if pa.types.is_string(array.type):
        return array, []
    return type_values(array.to_pylist(), rows, name, bad)


def _type_values_numeric(array: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list]:
    """float64 values: NaN is missing, an infinite value a row error (the readers' rule)."""
    return type_values(array.to_pylist(), rows, name, bad) if pc.any(pc.is_inf(array)).as_py() else (
        pc.if_else(pc.is_nan(array), pa.scalar(None, pa.float64()), array), [])


def _type_arrow_ident(array: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list]:
    """The id column: int64 when its values are integers that fit, else exact text (as for JSON)."""
    if pa.types.is_integer(array.type) and array.type.bit_width <= 64 and not (
            pa.types.is_uint64(array.type) and pc.max(array).as_py() is not None and pc.max(array).as_py() >= 2**63):
        return array.cast(pa.int64()), []
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array.cast(pa.string()), []
    return type_ident(array.to_pylist(), rows, name, bad)


__all__ = ["ROW_COLUMN", "RowGroups", "check_schema", "group_chunks", "open_file", "read_chunk"]
