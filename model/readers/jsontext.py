"""JSON text as every JSON reader parses it (NDJSON lines, JSON-array elements, /predict bodies): orjson, and for
the text it refuses, Python's parser, which also reads NaN, Infinity, numbers past float64 and integers of any
length (they become missing values or row errors, never a malformed body)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_MAX_INT_DIGITS = 4000  # under Python's default int <-> text limit (4300), which json.loads would raise past
_FAILED = object()


def _always(text: bytes) -> bool:
    return True


def loads(text: bytes, *, lenient: Callable[[bytes], Any] = _always) -> Any:
    """The JSON value of `text`: orjson's, else Python's when `lenient(text)` is true (orjson's error if both fail)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if not lenient(text) or (value := _loads_lenient(text)) is _FAILED:
            raise
    return value


def _loads_lenient(text: bytes) -> Any:
    """Python's parser for text orjson rejects, or _FAILED."""
    try:
        value = json.loads(text, parse_int=_parse_int)
        json.dumps(value, ensure_ascii=False).encode()  # rejects lone surrogates (`"\\ud800"`), as orjson does
    except (ValueError, RecursionError):
        return _FAILED
    return value


def _parse_int(text: str) -> int | float:
    """An integer literal; past Python's int-to-text digit limit it is far past float64: infinity, a row error."""
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)



def kept_values(lines: list[bytes], keep: list[str]) -> dict[str, list[Any]] | None:
    """The kept keys' values when every line is a JSON object, else None.

    Each record is dropped as soon as its kept values are taken: holding a block's worth of parsed records
    first makes this step about twice as slow.
    """
    try:
        values = [tuple(map(orjson.loads(line).get, keep)) for line in lines]  # only dicts have .get
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return dict(zip(keep, map(list, zip(*values, strict=True)), strict=True)) if values else {c: [] for c in keep}



def columns_of(records: list[dict], keep: list[str]) -> dict[str, list[Any]]:
    """Column-wise values of the kept keys (None where a record lacks a key)."""
    return {c: [r.get(c) for r in records] for c in keep}


def parse_record(text: bytes) -> tuple[dict | None, str | None]:
    """One JSON record, or why it is unreadable; NaN/Infinity literals are understood (see module doc)."""
    try:
        value = loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg}"
    if type(value) is not dict:
        return None, "not a JSON object"
    return value, None

