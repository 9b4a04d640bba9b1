"""Per-key rate limits (Flask-Limiter on the shared Redis) and the backpressure check for new jobs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, current_app
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from api.auth import rate_limit_identity
from api.errors import ApiError, error_response
from core.settings import Settings

# Seconds a client is asked to wait when the queue is over its row budget.
BACKPRESSURE_RETRY_AFTER = 30


def build_limiter(app: Flask, settings: Settings, storage_uri: str, enabled: bool) -> Limiter:
    """A Limiter bound to `app`; counters live in `storage_uri` (the service's Redis) so every process shares them."""
    limiter = Limiter(
        key_func=rate_limit_identity,
        storage_uri=storage_uri,
        # A Redis cut off from this host fails a check within the timeout (then swallowed below), never hangs it.
        storage_options={"socket_timeout": settings.redis_socket_timeout,
                         "socket_connect_timeout": settings.redis_socket_timeout},
        strategy="fixed-window",
        # X-RateLimit-* headers cost two more Redis round trips on every request; Retry-After is set on 429 only.
        headers_enabled=False,
        key_prefix=f"{settings.key_prefix}:rl",
        # A Redis hiccup must not turn scoring into 500s: the request goes through unlimited and it is logged.
        swallow_errors=True,
        enabled=enabled,
    )
    limiter.init_app(app)
    # Limits hold the limiter weakly; a disabled limiter is not kept by init_app, so the app keeps it.
    app.extensions["predictq_limiter"] = limiter
    return limiter


def apply_shared_limit(app: Flask, limiter: Limiter, limit: str, scope: str, endpoints: Iterable[str]) -> None:
    """Put `endpoints` under one shared per-key budget named `scope` (for example, every poll route)."""
    decorate: Callable = limiter.shared_limit(limit, scope=scope)
    for endpoint in endpoints:
        app.view_functions[endpoint] = decorate(app.view_functions[endpoint])


def retry_after_seconds(limiter: Limiter) -> int:
    """Seconds until the breached limit's window resets (at least 1)."""
    breached = limiter.current_limit
    if breached is None:
        return 1
    try:
        return max(1, math.ceil(breached.window[0] - time.time()))
    except Exception:
        # The storage went away between the breach and now: the whole window is a safe answer.
        return max(1, int(breached.limit.get_expiry()))


def rate_limited_response(exc: RateLimitExceeded) -> Response:
    """429 in the one JSON shape, with Retry-After."""
    retry_after = retry_after_seconds(current_app.extensions["predictq_limiter"])
    return error_response(
        429,
        "rate_limited",
        f"rate limit exceeded ({exc.description}); retry in {retry_after} s",
        {"limit": str(exc.description), "retry_after_seconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def check_backpressure(queued_rows: int, max_queued_rows: int, queued_bytes: int = 0,
                       max_queued_bytes: int | None = None) -> None:
    """Refuse new jobs with 503 and Retry-After while the queue holds more rows or bytes than the budget allows."""
    if queued_rows > max_queued_rows or (max_queued_bytes is not None and queued_bytes > max_queued_bytes):
        details: dict[str, int] = {"queued_rows": queued_rows, "max_queued_rows": max_queued_rows}
        if max_queued_bytes is not None:
            details |= {"queued_bytes": queued_bytes, "max_queued_bytes": max_queued_bytes}
        raise ApiError(
            503,
            "overloaded",
            "too much work is queued; retry later",
            details,
            {"Retry-After": str(BACKPRESSURE_RETRY_AFTER)},
        )
