"""One JSON error shape for every failure: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis
from flask import Flask, Response
from typing_extensions import TypedDict
from werkzeug.exceptions import HTTPException

from api.request_id import current_request_id
from jobs.errors import JobExpired, JobNotFound
from model.errors import ArtifactError, SchemaError
from model.readers import ReadError

log = logging.getLogger(__name__)

# Stable codes of model.readers.ReadError and the HTTP status each one answers with.
READ_ERROR_STATUS: dict[str, int] = {
    "malformed": 400,
    "missing_columns": 400,
    "duplicate_columns": 400,
    "delimiter": 400,
    "empty": 400,
    "not_utf8": 400,
    "too_deep": 400,
    "line_too_long": 413,
    "too_large": 413,
    "unsupported_format": 415,
}

# HTTP statuses raised by werkzeug/Flask and the code word clients see for each.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    410: "expired",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorBody(TypedDict):
    """What went wrong: a stable `code`, a message for people, and details naming the problem (with
    `request_id` inside a request)."""

    code: str
    message: str
    details: dict[str, Any]


class Error(TypedDict):
    """The one error shape of every answer that is not a success."""

    error: ErrorBody


class ApiError(Exception):
    """An error the API answers on purpose, with its status, stable code, message and details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


# An error names the problem; it never echoes more than a few KB of what the client sent.
MAX_ECHO_CHARS = 512
MAX_MESSAGE_CHARS = 2048
MAX_ECHO_ITEMS = 50


def _clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def bounded(value: Any) -> Any:
    """`value` (an error's details) with long strings clipped and long lists cut, however deeply nested."""
    if isinstance(value, str):
        return _clip(value, MAX_ECHO_CHARS)
    if isinstance(value, dict):
        return {key: bounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        kept = [bounded(item) for item in value[:MAX_ECHO_ITEMS]]
        return [*kept, f"... ({len(value) - MAX_ECHO_ITEMS} more)"] if len(value) > MAX_ECHO_ITEMS else kept
    return value


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The one JSON error body, with its status and any extra headers (Retry-After, Allow, ...); the message
    and details are bounded so that an error never echoes a large part of the request. Inside a request,
    `details.request_id` names it."""
    details = bounded(details or {})
    request_id = current_request_id()
    if request_id is not None:
        details = {**details, "request_id": request_id}
    error: Error = {"error": {"code": code, "message": _clip(message, MAX_MESSAGE_CHARS), "details": details}}
    body = orjson.dumps(error)
    response = Response(body, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def read_error_to_api(exc: ReadError) -> ApiError:
    """Map a `model.readers.ReadError` to its HTTP status, keeping its stable code and its line and column."""
    details = {key: value for key in ("line", "column", "missing") if (value := getattr(exc, key, None)) is not None}
    return ApiError(READ_ERROR_STATUS.get(exc.code, 400), exc.code, exc.message, details)


def _handle_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _handle_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() in {"allow", "retry-after", "www-authenticate"}}
    details: dict[str, Any] = {}
    if status == 405 and "Allow" in headers:
        details["allowed"] = [m.strip() for m in headers["Allow"].split(",")]
    code = HTTP_CODES.get(status, "http_error")
    return error_response(status, code, exc.description or code, details, headers)


def _handle_schema(exc: SchemaError) -> Response:
    return error_response(400, "missing_columns", str(exc), {"missing": list(exc.missing)})


def _handle_artifact(exc: ArtifactError) -> Response:
    log.error("model artifact unavailable: %s", exc)
    return error_response(503, "model_unavailable", "the model is not available", {}, {"Retry-After": "30"})


def _handle_redis(exc: redis.RedisError) -> Response:
    log.error("redis unavailable: %s", exc)
    return error_response(503, "storage_unavailable", "the job store is unavailable; retry later", {},
                          {"Retry-After": "5"})


def _handle_not_found(exc: JobNotFound) -> Response:
    return error_response(404, "job_not_found", str(exc), {"job_id": exc.job_id})


def _handle_expired(exc: JobExpired) -> Response:
    return error_response(410, "job_expired", str(exc), {"job_id": exc.job_id, "expired_at": exc.expired_at})


def _handle_unexpected(exc: Exception) -> Response:
    # Real bugs only: the traceback goes to the server log, the client sees no internals.
    log.exception("unhandled error")
    return error_response(500, "internal", "internal server error")


def register_error_handlers(app: Flask) -> None:
    """Answer every error, including werkzeug's 404/405 and unexpected bugs, in the one JSON shape."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(SchemaError, _handle_schema)
    app.register_error_handler(ArtifactError, _handle_artifact)
    app.register_error_handler(redis.RedisError, _handle_redis)
    app.register_error_handler(JobNotFound, _handle_not_found)
    app.register_error_handler(JobExpired, _handle_expired)
    app.register_error_handler(Exception, _handle_unexpected)
