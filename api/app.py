"""The Flask application factory: settings, keys, services, error handlers, blueprints, rate limits."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_limiter.errors import RateLimitExceeded

from api import console, jobs, ops, predict, request_id, summary
from api.auth import KeyRing
from api.errors import register_error_handlers
from api.limits import apply_shared_limit, build_limiter, rate_limited_response
from api.metrics import api_metrics
from api.services import EXTENSION_KEY, Services
from core.settings import Settings

# The WSGI environ key gunicorn's access log (predictq.gunicorn_edge) reads the matched route from.
ROUTE_ENVIRON_KEY = "predictq.route"

POLL_ENDPOINTS = ("jobs.list_jobs", "jobs.get_job", "jobs.cancel_job", "jobs.get_results", "jobs.get_errors",
                  "summary.get_summary", "summary.get_model")


def _note_route() -> None:
    """Tell the access log which route matched: it prints the rule (`/v1/jobs/<job_id>`), never the raw path."""
    if request.url_rule is not None:
        request.environ[ROUTE_ENVIRON_KEY] = request.url_rule.rule


def _count_response(response: Response) -> Response:
    """Count every answer by route and status."""
    api_metrics().requests.labels(request.endpoint or "unmatched", str(response.status_code)).inc()
    return response


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API. `settings` default to the environment; `test_config` may carry Flask config plus
    `SERVICES` (a dict of `scorer`, `redis`, `jobs` to use instead of the real ones) and
    `RATELIMIT_STORAGE_URI` / `RATELIMIT_ENABLED`."""
    settings = settings or Settings.from_env()
    test_config = dict(test_config or {})
    app = Flask(__name__)
    app.config.from_mapping(RATELIMIT_STORAGE_URI=settings.redis_url, RATELIMIT_ENABLED=True)
    overrides = test_config.pop("SERVICES", None)
    app.config.update(test_config)
    app.extensions[EXTENSION_KEY] = Services(settings, KeyRing.from_settings(settings), overrides)

    app.before_request(_note_route)  # first, so it runs even when a rate limit refuses the request
    request_id.init_app(app)
    register_error_handlers(app)
    for blueprint in (predict.bp, jobs.bp, summary.bp, ops.bp, console.bp):
        app.register_blueprint(blueprint)
    app.after_request(_count_response)
    api_metrics()  # created once per process before requests arrive (gunicorn workers build the app after fork)

    limiter = build_limiter(app, settings, app.config["RATELIMIT_STORAGE_URI"], bool(app.config["RATELIMIT_ENABLED"]))
    app.register_error_handler(RateLimitExceeded, rate_limited_response)
    apply_shared_limit(app, limiter, settings.rate_limit_predict, "predict", ["predict.predict"])
    apply_shared_limit(app, limiter, settings.rate_limit_submit, "submit", ["jobs.submit_job"])
    apply_shared_limit(app, limiter, settings.rate_limit_poll, "poll", POLL_ENDPOINTS)
    return app
