"""Exceptions raised by `predictq.Client`: one class per kind of failure, each carrying what the server said.

Every exception is an `ApiError` with `status` (0 when no HTTP answer came), `code` (the server's stable error
code, e.g. `missing_columns`), `message`, `details` and `request_id` (quote it to an operator: it is on the
server's log lines of that request).
"""

from __future__ import annotations

from typing import Any


class ApiError(RuntimeError):
    """The server refused a request, or could not be reached."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 request_id: str | None = None, retry_after: float | None = None) -> None:
        text = f"{status} {code}: {message}" if status else f"{code}: {message}"
        super().__init__(f"{text} (request id {request_id})" if request_id else text)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the request or its body cannot be used (`code` says why: malformed, missing_columns, ...)."""


class Unauthorized(ApiError):
    """401: missing or unknown API key."""


class Forbidden(ApiError):
    """403."""


class NotFound(ApiError):
    """404: no such job for this key (or no such route)."""


class Conflict(ApiError):
    """409: the job closed during its upload, or the Idempotency-Key is in use by a request in progress."""


class Gone(ApiError):
    """410: the job expired."""


class PayloadTooLarge(ApiError):
    """413: too many bytes or rows for this call."""


class UnsupportedMediaType(ApiError):
    """415: the body's type or charset is not one the server reads."""


class Unprocessable(ApiError):
    """422: e.g. `idempotency_key_reused`, the key was used for another body."""


class RateLimited(ApiError):
    """429: this key's rate limit is exhausted; `retry_after` seconds until it resets."""


class ServerError(ApiError):
    """5xx other than 503."""


class Unavailable(ApiError):
    """503: the server is overloaded or a dependency is down; `retry_after` says when to come back."""


class ConnectionFailed(ApiError):
    """No HTTP answer: the server could not be reached, or the connection broke or timed out."""


class JobFailed(ApiError):
    """A job ended failed or cancelled when its results were asked for."""


class WaitTimeout(ApiError):
    """A job did not reach a final state within the time given to `Job.wait`."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone,
    413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable, 429: RateLimited, 503: Unavailable,
}


def error_class(status: int) -> type[ApiError]:
    """The exception class for an HTTP status."""
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
