"""Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document and its browsable page."""

from __future__ import annotations

import logging
from importlib import resources

from flask import Blueprint, Response

from api.metrics import JobsCollector, render
from api.openapi import build_openapi
from api.responses import json_response
from api.services import services

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (no dependency is checked)."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when Redis answers and the model is loaded (the first call loads it)."""
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        scorer = svc.scorer
        checks["model"] = f"loaded {scorer.version}"
    except Exception as exc:
        log.error("model not loaded: %s", exc)
        checks["model"] = f"not loaded: {type(exc).__name__}"
    ready = checks["redis"] == "ok" and checks["model"].startswith("loaded")
    return json_response({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition: API counters plus job, chunk and queue metrics read from Redis at scrape time."""
    svc = services()
    text = render(JobsCollector(svc.jobs))
    return Response(text, mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document."""
    return json_response(build_openapi(services().settings))


@bp.get("/docs")
def docs() -> Response:
    """A self-contained HTML page rendering /openapi.json (no CDN needed)."""
    page = resources.files("api").joinpath("static/docs.html").read_bytes()
    return Response(page, mimetype="text/html")
