"""JSON responses serialized with orjson (numpy scalars included, NaN written as null)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`payload` as an application/json response."""
    response = Response(orjson.dumps(payload, option=JSON_OPTIONS), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
