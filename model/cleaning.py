"""Vectorized cleaning of raw input columns: numbers, money, percents and categorical levels.

Every function takes one column as it arrived (pyarrow array, pandas Series, numpy array or Python list, its
values numbers, strings, nulls or garbage) and returns typed numpy arrays plus a mask of rows that cannot be
read. A fast path handles clean columns with one pyarrow cast; mixed-type columns take a slower, still
vectorized path. Nothing here loops over rows in Python except to word the messages of rows already failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# '$6,882.34', '$-5,032.58', '-$5.00', '6,882.34' and the accounting form '($5,032.58)': thousands groups of
# three or no separators at all, so a decimal comma ('6882,34') is not silently read as 688234. Plain numbers
# ('1e3', '-1.018506') do not match and go straight to the number cast.
_INTEGER = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?"
_MONEY_RE = rf"^(?:\(\$?{_INTEGER}\)|-?\$?-?{_INTEGER})$"
_MISSING_STRINGS = pa.array(["", "nan", "null", "none", "na", "n/a"])
_FLOAT = pa.float64()
_NUMBER_TYPES = (float, int, np.float64, np.float32, np.int64, np.int32)
_PLAIN_NUMBER_TYPES = {float, int, type(None)}
_FLOAT_MAX = float(np.finfo(np.float64).max)

Column = pa.Array | np.ndarray


def as_column(values: Any) -> Column:
    """One input column as a pyarrow array, or as a numpy object array when its Python types are mixed."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if _holds_bool(values):
        # pyarrow would read True as 1.0 in a column of numbers; a boolean is never a valid value here.
        return pd.Series(values, dtype=object).to_numpy()
    try:
        # from_pandas (NaN -> null) only where NaN can hide; it costs a lookup per call on the one-row path.
        return pa.array(values, from_pandas=isinstance(values, pd.Series | np.ndarray))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
        return pd.Series(values, dtype=object).to_numpy()


def _text_array(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Python strings as an Arrow string array (null where not valid Unicode) and the mask of those invalid."""
    try:
        return pa.array(values, pa.string()), np.zeros(len(values), dtype=bool)
    except UnicodeEncodeError:
        # Rare: a lone surrogate, which JSON's "\\ud800" escape can carry; found value by value.
        broken = np.frompyfunc(_unencodable, 1, 1)(values).astype(bool)
        return pa.array(np.where(broken, None, values), pa.string()), broken


def _unencodable(text: str) -> bool:
    """Whether a Python string has no UTF-8 form (it holds a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds_bool(values: Any) -> bool:
    """Whether a Python sequence or object array holds a boolean (one C-level pass over the types)."""
    if isinstance(values, pd.Series | np.ndarray) and values.dtype != object:
        return False
    kinds = set(map(type, values))
    return bool in kinds or np.bool_ in kinds


def value_at(values: Any, position: int) -> Any:
    """The raw Python value at one position of a column in any container, for error messages."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values[position].as_py()
    if isinstance(values, pd.Series):
        return values.iloc[position]
    return values[position]


def _mask(array: pa.Array) -> np.ndarray:
    """A boolean pyarrow array as a numpy mask, nulls counted False."""
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def _floats(array: pa.Array) -> np.ndarray:
    """A numeric pyarrow array as float64 with nulls as NaN."""
    if array.type != _FLOAT:
        array = pc.cast(array, _FLOAT)
    return array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _blank(text: pa.Array) -> np.ndarray:
    """Which trimmed strings mean missing: null, empty, or a spelled-out NaN/null."""
    return _mask(pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), value_set=_MISSING_STRINGS)))


def _money_to_number(text: pa.Array) -> pa.Array:
    """Money strings in the accepted forms rewritten as plain numbers; other strings left as they are."""
    plain = pc.replace_substring(pc.replace_substring(pc.replace_substring(text, "$", ""), ",", ""), ")", "")
    return pc.if_else(pc.match_substring_regex(text, _MONEY_RE), pc.replace_substring(plain, "(", "-"), text)


def _percent_to_number(text: pa.Array) -> pa.Array:
    """'62.59%' -> '62.59' (a percent sign only at the end)."""
    return pc.if_else(pc.ends_with(text, "%"), pc.utf8_slice_codeunits(text, 0, -1), text)


def _strings_to_floats(text: pa.Array, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse strings as numbers of the given kind; returns values (NaN missing) and the bad mask.

    Fast path: ASCII-trim, rewrite money/percent, one cast; NaN after the cast is a missing value (null or
    'nan'). Slow path, only when the cast fails: full Unicode trim, every spelling of missing (''), and a
    coercing parse that flags exactly the values that are not numbers.
    """
    to_number = {"money": _money_to_number, "percent": _percent_to_number}.get(kind, lambda t: t)
    try:
        values = _floats(to_number(pc.ascii_trim_whitespace(text)))
        return values, np.isinf(values)
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(text)
    missing = _blank(trimmed)
    cleaned = pc.if_else(pa.array(missing), pa.scalar(None, trimmed.type), to_number(trimmed))
    values = pd.to_numeric(cleaned.to_numpy(zero_copy_only=False), errors="coerce").astype(np.float64)
    bad = ~missing & ~np.isfinite(values)
    return np.where(missing, np.nan, values), bad


def _object_to_floats(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Mixed Python types: numbers pass, strings are parsed, None/NaN are missing, anything else is bad."""
    types = np.frompyfunc(type, 1, 1)(values)
    missing = pd.isna(values)
    is_number = pd.Series(types).isin(_NUMBER_TYPES).to_numpy() & ~missing
    is_text = np.equal(types, str)
    out = np.full(len(values), np.nan)
    bad = ~(missing | is_number | is_text)
    numbers = values[is_number]
    try:
        out[is_number] = numbers.astype(np.float64)
    except OverflowError:
        # An integer beyond float64's range: flag it, convert the rest (rare, so checked value by value).
        fits = np.frompyfunc(lambda v: abs(v) <= _FLOAT_MAX, 1, 1)(numbers).astype(bool)
        out[np.flatnonzero(is_number)[fits]] = numbers[fits].astype(np.float64)
    bad[is_number] = ~np.isfinite(out[is_number])
    if is_text.any():
        text, broken = _text_array(values[is_text])
        parsed, text_bad = _strings_to_floats(text, kind)
        out[is_text] = parsed
        bad[is_text] = text_bad | broken
    return out, bad


def parse_numeric(values: Any, kind: str = "number") -> tuple[np.ndarray, np.ndarray]:
    """One numeric column to float64 (NaN = missing) and a mask of unreadable rows; kind: number/money/percent."""
    if isinstance(values, list) and set(map(type, values)) <= _PLAIN_NUMBER_TYPES:
        # JSON records of plain numbers and nulls: one numpy conversion (None -> NaN), no Arrow round trip.
        try:
            out = np.array(values, dtype=np.float64)
            return out, np.isinf(out)
        except OverflowError:
            pass
    column = as_column(values)
    if isinstance(column, np.ndarray):
        return _object_to_floats(column, kind)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind_of = column.type
    if pa.types.is_floating(kind_of) or pa.types.is_integer(kind_of) or pa.types.is_decimal(kind_of):
        out = _floats(column)
        return out, np.isinf(out)
    if pa.types.is_null(kind_of):
        return np.full(len(column), np.nan), np.zeros(len(column), dtype=bool)
    if pa.types.is_string(kind_of) or pa.types.is_large_string(kind_of) or pa.types.is_string_view(kind_of):
        return _strings_to_floats(column, kind)
    # Booleans, lists, structs: no number there, unless the value is null.
    return np.full(len(column), np.nan), ~pc.is_null(column).to_numpy(zero_copy_only=False)


def encode_levels(values: Any, levels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One categorical column to float level codes (index into `levels`, NaN = missing) and the bad mask.

    Exact matches take one lookup; others are retried trimmed and case-folded, so ' Monday' is 'monday'.
    """
    column = as_column(values)
    if isinstance(column, np.ndarray):
        types = np.frompyfunc(type, 1, 1)(column)
        is_text = np.equal(types, str)
        codes = np.full(len(column), np.nan)
        bad = ~(pd.isna(column) | is_text)
        if is_text.any():
            text, broken = _text_array(column[is_text])
            codes[is_text], text_bad = encode_levels(text, levels)
            bad[is_text] = text_bad | broken
        return codes, bad
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan), np.zeros(len(column), dtype=bool)
    if pa.types.is_floating(column.type):  # NaN or null only, if it is to be valid
        return np.full(len(column), np.nan), ~np.isnan(_floats(column))
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return np.full(len(column), np.nan), ~pc.is_null(column).to_numpy(zero_copy_only=False)
    level_set = pa.array(list(levels), pa.string())
    index = pc.index_in(column, value_set=level_set)
    if index.null_count > column.null_count:
        folded = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        index = pc.coalesce(index, pc.index_in(folded, value_set=pc.utf8_lower(level_set)))
        missing = _blank(folded)
    else:
        missing = pc.is_null(column).to_numpy(zero_copy_only=False)
    codes = _floats(index)
    return codes, np.isnan(codes) & ~missing
