"""HTTP transport of the predictq client: one pooled session, typed errors from the API's error shape, and
retries of calls that are safe to repeat (see `Transport.request`)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import IO, Any

import requests
from requests.adapters import HTTPAdapter

from predictq.errors import ApiError, ConnectionFailed, error_class

DEFAULT_URL = "http://127.0.0.1:1313"
UPLOAD_BLOCK_BYTES = 256 * 1024
RETRY_STATUSES = frozenset({429, 502, 503, 504})

Progress = Callable[[int], None]


class _LargeBlocks(HTTPAdapter):
    """Sends request bodies in UPLOAD_BLOCK_BYTES blocks: urllib3 reads 16 KB at a time by default, which makes
    a 1 GB upload 65,000 reads and sends (about 0.5 s of client time on a 2-core machine)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = UPLOAD_BLOCK_BYTES
        super().init_poolmanager(*args, **kwargs)


def _session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _LargeBlocks())
    session.mount("https://", _LargeBlocks())
    return session


class ProgressReader:
    """A file wrapper that reports every block read, with a length so requests sends Content-Length."""

    def __init__(self, raw: IO[bytes], size: int, on_read: Progress | None = None) -> None:
        self._raw = raw
        self._size = size
        self._on_read = on_read

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        """Read up to `n` bytes and report how many were read."""
        block = self._raw.read(UPLOAD_BLOCK_BYTES if n is None or n < 0 else n)
        if block and self._on_read is not None:
            self._on_read(len(block))
        return block


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header given in seconds (an HTTP date is not used by predictq)."""
    raw = response.headers.get("Retry-After")
    try:
        return max(float(raw), 0.0) if raw is not None else None
    except ValueError:
        return None


def _error_from(response: requests.Response) -> ApiError:
    """The typed exception for an error answer in the API's `{"error": {"code", "message", "details"}}` shape."""
    request_id = response.headers.get("X-Request-Id")
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200] or str(response.reason), {}
    cls = error_class(response.status_code)
    return cls(response.status_code, code, message, details, request_id or details.get("request_id"),
               _retry_after(response))


def _retryable(error: ApiError) -> bool:
    return error.status in RETRY_STATUSES or (error.status == 409 and error.code == "idempotency_key_in_use")


class Transport:
    """A predictq server at `url` (default PREDICTQ_URL, else http://127.0.0.1:1313), called with `api_key`
    (default PREDICTQ_API_KEY).

    `timeout` bounds each connect and each read (seconds); retries stop after `max_attempts` attempts or
    `max_retry_seconds` of waiting, whichever comes first.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 max_attempts: int = 5, max_retry_seconds: float = 120.0, backoff: float = 0.5) -> None:
        self.base_url = (url or os.environ.get("PREDICTQ_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("PREDICTQ_API_KEY") or None
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_retry_seconds = max_retry_seconds
        self.backoff = backoff
        self._http = _session()
        self._sleep: Callable[[float], None] = time.sleep

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def request(self, method: str, path: str, *, retry: bool | None = None,
                body: Callable[[ExitStack], Any] | None = None, **kwargs: Any) -> requests.Response:
        """Send a request and return its 2xx answer, retrying when `retry` (default: GET and DELETE).

        `body(stack)` builds the request body afresh for each attempt (files it opens go on `stack`).
        Raises the `predictq.errors` class of the last failure.
        """
        retry = method in {"GET", "HEAD", "DELETE"} if retry is None else retry
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        started = time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            try:
                with ExitStack() as stack:
                    if body is not None:
                        kwargs["data"] = body(stack)
                    response = self._http.request(method, f"{self.base_url}{path}", headers=headers,
                                                  timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: ApiError = ConnectionFailed(
                    0, "unreachable", f"cannot reach {self.base_url}: {exc.__class__.__name__}")
            else:
                if response.status_code < 400:
                    return response
                error = _error_from(response)
                response.close()
                if not _retryable(error):
                    raise error
            if not retry or attempt == self.max_attempts:
                raise error
            delay = self._delay(attempt, error.retry_after)
            if time.monotonic() - started + delay > self.max_retry_seconds:
                raise error
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gave one, else exponential backoff with full jitter."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0, self.backoff * 2 ** (attempt - 1))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()
