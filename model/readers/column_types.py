"""How a chunk's kept columns are typed: numbers as float64, text as strings, the id column as int64 or its exact
text; values that cannot stand in a scalar column are row errors, and their rows are dropped."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.errors import RowError
from model.schema import ROW_COLUMN

_SAMPLE = 64  # cells tried before casting a whole CSV column to numbers
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

TypeColumn = Callable[[Any, np.ndarray, str, np.ndarray], tuple[pa.Array, list[RowError]]]


def finish(
    type_column: TypeColumn, type_ident: TypeColumn, values: dict[str, Any], rows: np.ndarray, present: list[str],
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


def type_text(text: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """CSV text: a column whose every non-null cell parses as a number becomes float64, else stays text."""
    numbers = _as_numbers(text)
    return (text, []) if numbers is None else _finite(numbers, rows, name, bad)


def type_text_ident(text: pa.Array, rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
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


def type_values(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """One column's Python values as float64 or strings, with row errors for values that cannot be scalars."""
    array = _as_array(items)
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


def _as_array(items: list[Any]) -> pa.Array | None:
    """The values as the array pyarrow infers for them (NaN as null), or None when it infers none."""
    try:
        return pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _type_mixed(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """The slow path for a column mixing kinds of value (only chunks holding such values pay for it)."""
    cleaned, errors = _scalars(items, rows, name, bad, exact_ints=False)
    if any(isinstance(v, str) for v in cleaned):
        return _texts(cleaned), errors
    return pa.array([None if v is None else float(v) for v in cleaned], pa.float64()), errors


def type_ident(items: list[Any], rows: np.ndarray, name: str, bad: np.ndarray) -> tuple[pa.Array, list[RowError]]:
    """The passthrough column: int64 when every value is an integer that fits, else exact text; never float64."""
    array = _as_array(items)
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

