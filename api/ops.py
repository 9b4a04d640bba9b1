"""Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document and its browsable page."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import redis
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


# Redis this full is reported not ready: a job's state and the broker's messages would soon be refused.
REDIS_MEMORY_READY_FRACTION = 0.95


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when Redis answers with room to spare, the blob store has room above its reserve, and the model is
    loaded (the first call loads it). `storage` gives the figures behind the two room checks."""
    svc = services()
    checks: dict[str, str] = {}
    storage: dict[str, object] = {}
    try:
        svc.redis.ping()
        checks["redis"] = _redis_memory_check(svc.redis, storage)
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    checks["store"] = _store_check(svc, storage)
    try:
        scorer = svc.scorer
        checks["model"] = f"loaded {scorer.version}"
    except Exception as exc:
        log.error("model not loaded: %s", exc)
        checks["model"] = f"not loaded: {type(exc).__name__}"
    ready = checks["redis"] == "ok" and checks["store"] == "ok" and checks["model"].startswith("loaded")
    body = {"status": "ready" if ready else "not ready", "checks": checks, "storage": storage}
    return json_response(body, 200 if ready else 503)


def _redis_memory_check(client: Any, storage: dict[str, object]) -> str:
    """'ok', or that Redis is nearly at its maxmemory; its memory figures go into `storage`."""
    try:
        memory = client.info("memory")
    except redis.ResponseError:  # a server without INFO MEMORY: nothing to report
        return "ok"
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    storage["redis"] = {"used_memory_bytes": used, "maxmemory_bytes": limit or None}
    if limit and used >= REDIS_MEMORY_READY_FRACTION * limit:
        return f"memory nearly full: {used} of {limit} bytes"
    return "ok"


def _store_check(svc: Any, storage: dict[str, object]) -> str:
    """'ok', or why the blob store cannot take new uploads; its free space goes into `storage`."""
    blobs = svc.jobs.blobs
    try:
        free = blobs.free_bytes()
    except Exception as exc:
        log.error("blob store unavailable: %s", exc)
        return f"unreachable: {type(exc).__name__}"
    storage["store"] = {"uri": blobs.uri, "free_bytes": free, "reserve_bytes": blobs.reserve_bytes}
    if free is not None and free <= blobs.reserve_bytes:
        return f"full: {free} bytes free, reserve {blobs.reserve_bytes}"
    return "ok"


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
