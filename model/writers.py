"""Streaming writers: result (or row-error) tables to CSV, NDJSON, a JSON array or Parquet, one block of bytes at
a time.

Columns come out in Python-sorted order of their names (in `plain` writes: in the tables' order). Floats are
written with the shortest text that reads back to the same double (non-finite floats become empty in CSV, `null`
in JSON); integers as integers. In CSV only, a text cell or header cell (a client's id column name) starting with
`=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` so that spreadsheets do not run it as a formula (not
in `plain` writes, whose data is meant to be read back, such as synthetic inputs); numeric columns and JSON
output are never altered. Parquet keeps each column's type (the first table's; a later table is cast to it).
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from model.prefetch import ordered_map
from model.readers import format_from_path

BATCH_ROWS = 20_000  # rows encoded per yielded block: bounds the size of each block of bytes
_FORMULA_START = r"^[=+\-@\t\r]"
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def iter_encoded(tables: Iterable[pa.Table], fmt: str, *, plain: bool = False, threads: int = 1) -> Iterator[bytes]:
    """Encode the tables, in order, as one CSV / NDJSON / JSON-array / Parquet document, yielded in blocks.

    `plain` writes the tables as data: columns in their own order, CSV text as it is (see the module docstring).
    With `threads` > 1, CSV blocks are encoded on that many threads at once (pyarrow's CSV writer releases the
    GIL), still yielded in order; the other formats are encoded in the calling thread.
    """
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    encode = partial(_iter_csv, defuse=not plain, threads=threads) if fmt == "csv" else WRITERS[fmt]
    return encode(_batches(tables, sort=not plain))


def write_file(tables: Iterable[pa.Table], path: str | Path, fmt: str | None = None, *, plain: bool = False) -> None:
    """Write the tables to `path` in the format of its extension (or `fmt`); the file appears complete or not."""
    path = Path(path)
    fmt = fmt or format_from_path(path, OUTPUT_FORMATS)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for block in iter_encoded(tables, fmt, plain=plain):
                out.write(block)
        os.chmod(temp, 0o644)  # mkstemp's private 0600 is not what a results file should have
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _batches(tables: Iterable[pa.Table], *, sort: bool = True) -> Iterator[pa.Table]:
    """The tables (columns sorted by name if `sort`), cut into slices of at most BATCH_ROWS rows (empty tables
    kept once)."""
    for table in tables:
        if sort:
            table = table.select(sorted(table.column_names))
        if table.num_rows == 0:
            yield table
        for start in range(0, table.num_rows, BATCH_ROWS):
            yield table.slice(start, BATCH_ROWS)


# --- Parquet -----------------------------------------------------------------------------------------


class _Spool:
    """A write-only file that keeps what was written until it is taken (ParquetWriter writes into it)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _iter_parquet(batches: Iterator[pa.Table]) -> Iterator[bytes]:
    """A Parquet file, one row group per batch, in the first batch's schema (later batches are cast to it)."""
    spool = _Spool()
    writer: pq.ParquetWriter | None = None
    for batch in batches:
        if writer is None:
            writer = pq.ParquetWriter(spool, batch.schema, compression="zstd")
        elif batch.schema != writer.schema:
            if batch.column_names != writer.schema.names:
                raise ValueError(f"tables differ in columns: {batch.column_names} after {writer.schema.names}")
            batch = batch.cast(writer.schema)
        writer.write_table(batch)
        if data := spool.take():
            yield data
    if writer is None:  # no table at all: a valid file with no rows
        writer = pq.ParquetWriter(spool, pa.schema([("row", pa.int64())]), compression="zstd")
    writer.close()
    yield spool.take()


# --- CSV ---------------------------------------------------------------------------------------------


def _iter_csv(batches: Iterator[pa.Table], *, defuse: bool = True, threads: int = 1) -> Iterator[bytes]:
    """CSV with one header (the first table's columns); every later table must have the same columns.

    `defuse`: text cells and header cells that look like formulas get a leading `'` (see the module docstring).
    """

    def checked() -> Iterator[tuple[pa.Table, bool]]:
        names: list[str] | None = None
        for batch in batches:
            if names is not None and batch.column_names != names:
                raise ValueError(f"tables differ in columns: {batch.column_names} after {names}")
            yield batch, names is None
            names = batch.column_names

    return ordered_map(partial(_csv_bytes, defuse=defuse), checked(), threads)


def _csv_bytes(item: tuple[pa.Table, bool], defuse: bool) -> bytes:
    """One batch as CSV text, with the header line when asked."""
    batch, header = item
    out = io.BytesIO()
    pacsv.write_csv(_csv_safe(batch, defuse), out, write_options=pacsv.WriteOptions(include_header=header))
    return out.getvalue()


def _all_finite(column: pa.ChunkedArray | pa.Array) -> bool:
    """True when no value is NaN or infinite (nulls aside): their sum is finite then. A sum that overflows
    only says False, and the column is then checked value by value."""
    total = pc.sum(column).as_py()
    return total is None or math.isfinite(total)


def _defused(text: str) -> str:
    """A header cell as `_csv_safe` writes text cells: with a leading `'` when it looks like a formula."""
    return f"'{text}" if re.match(_FORMULA_START, text) else text


def _csv_safe(table: pa.Table, defuse: bool = True) -> pa.Table:
    """Text cells and header cells with formulas defused (if `defuse`), floats with non-finite values emptied."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if defuse and text:
            risky = pc.match_substring_regex(column, _FORMULA_START)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        elif pa.types.is_floating(column.type) and not _all_finite(column):
            column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
        columns.append(column)
    return pa.table(columns, names=[_defused(name) if defuse else name for name in table.column_names])


# --- NDJSON and JSON ---------------------------------------------------------------------------------


def _iter_ndjson(batches: Iterator[pa.Table]) -> Iterator[bytes]:
    """One JSON object per line."""
    for batch in batches:
        if batch.num_rows:
            yield _json_lines(batch, prefix="", suffix="\n")


def _iter_json(batches: Iterator[pa.Table]) -> Iterator[bytes]:
    """One JSON array, one object per line, valid with zero rows."""
    yield b"["
    empty = True
    for batch in batches:
        if batch.num_rows:
            block = _json_lines(batch, prefix=",\n", suffix="")
            yield block[1:] if empty else block  # no comma before the first element
            empty = False
    yield b"]\n" if empty else b"\n]\n"


def _json_lines(table: pa.Table, *, prefix: str, suffix: str) -> bytes:
    """The rows as JSON objects, each wrapped in `prefix`/`suffix`, built column-wise by pyarrow."""
    parts: list[pa.Array | str] = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        key = orjson.dumps(name).decode()
        parts += [f"{prefix}{{{key}:" if i == 0 else f",{key}:", _json_values(column.combine_chunks())]
    parts.append("}" + suffix)
    lines = pc.binary_join_element_wise(*parts, "")
    return _concatenated(lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines)


def _json_values(column: pa.Array) -> pa.Array:
    """Each value's JSON text (null for missing and non-finite numbers)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _json_values(column.cast(kind.value_type))
    if pa.types.is_floating(kind):
        text = column.cast(pa.string())
        # pyarrow writes 3.0 as "3"; keep it a float for JSON readers, as Python's repr and orjson do
        text = pc.if_else(pc.match_substring_regex(text, r"^-?\d+$"), pc.binary_join_element_wise(text, ".0", ""), text)
        finite = pc.and_kleene(pc.is_finite(column), pc.is_valid(column))
        return pc.if_else(pc.fill_null(finite, False), text, "null")
    if pa.types.is_integer(kind):
        return pc.fill_null(column.cast(pa.string()), "null")
    if pa.types.is_null(kind):
        return pa.repeat(pa.scalar("null"), len(column))
    if pa.types.is_boolean(kind):
        return pc.fill_null(pc.if_else(column, "true", "false"), "null")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.fill_null(_json_strings(column.cast(pa.string())), "null")
    texts = [orjson.dumps(v, default=str).decode() for v in column.to_pylist()]  # rare types: the slow way
    return pa.array(texts, pa.string())


def _json_strings(column: pa.Array) -> pa.Array:
    """Quote strings; only the few holding quotes, backslashes or control characters go through orjson."""
    quoted = pc.binary_join_element_wise('"', column, '"', "")
    escape = pc.fill_null(pc.match_substring_regex(column, _NEEDS_ESCAPE), False)
    if not pc.any(escape).as_py():
        return quoted
    where = np.flatnonzero(escape.to_numpy(zero_copy_only=False))
    escaped = [orjson.dumps(v).decode() for v in column.take(pa.array(where)).to_pylist()]
    return pc.replace_with_mask(quoted, escape, pa.array(escaped, pa.string()))


def _concatenated(lines: pa.Array) -> bytes:
    """The bytes of all strings of a string array, back to back (its data buffer between the offsets)."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    return bytes(memoryview(data)[offsets[0] : offsets[-1]]) if data is not None else b""


# Each format's encoder, by the format's name (core.formats); CSV's takes `defuse` as well.
WRITERS: dict[str, Callable[[Iterator[pa.Table]], Iterator[bytes]]] = {
    "csv": _iter_csv, "ndjson": _iter_ndjson, "json": _iter_json, "parquet": _iter_parquet,
}
OUTPUT_FORMATS = tuple(WRITERS)
