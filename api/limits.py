"""Per-key rate limits (Flask-Limiter on the shared Redis) and the backpressure check for new jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from api.auth import rate_limit_identity
from api.errors import ApiError, error_response
from predictq.settings import Settings

# Seconds a client is asked to wait when the queue is over its row budget.
BACKPRESSURE_RETRY_AFTER = 30


def build_limiter(app: Flask, settings: Settings, storage_uri: str, enabled: bool) -> Limiter:
    """A Limiter bound to `app`; counters live in `storage_uri` (the service's Redis) so every process shares them."""
    limiter = Limiter(
        key_func=rate_limit_identity,
        storage_uri=storage_uri,
        strategy="fixed-window",
        headers_enabled=True,
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


def rate_limited_response(exc: RateLimitExceeded) -> Response:
    """429 in the one JSON shape; Flask-Limiter adds Retry-After and X-RateLimit-* on the way out."""
    return error_response(
        429, "rate_limited", f"rate limit exceeded ({exc.description}); retry later", {"limit": str(exc.description)}
    )


def check_backpressure(queued_rows: int, max_queued_rows: int) -> None:
    """Refuse new jobs with 503 and Retry-After while the queue holds more rows than the budget allows."""
    if queued_rows > max_queued_rows:
        raise ApiError(
            503,
            "overloaded",
            "too much work is queued; retry later",
            {"queued_rows": queued_rows, "max_queued_rows": max_queued_rows},
            {"Retry-After": str(BACKPRESSURE_RETRY_AFTER)},
        )
