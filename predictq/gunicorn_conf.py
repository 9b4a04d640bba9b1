"""Gunicorn settings for the API (`gunicorn -c python:predictq.gunicorn_conf api.wsgi:app`), from the environment.

Gunicorn reads this module's globals when it starts; `predictq serve` and the container both point at it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from core.settings import Settings

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.api_port}"  # `predictq serve --bind` overrides this
workers = _settings.api_workers
# Threads let one worker keep answering polls while another request streams a large upload. This is gunicorn's
# gthread worker, answering its own parse errors (414, 431, bad request lines) in the one JSON error shape.
worker_class = "predictq.gunicorn_edge.JsonErrorWorker"
threads = _settings.api_threads
# gthread workers heartbeat from their main thread, so long uploads are not killed by this timeout.
timeout = 60
graceful_timeout = 30
keepalive = 5
# Each worker loads the model in post_worker_init; preloading in the master would share little across forks.
preload_app = False
accesslog = "-"
errorlog = "-"
# The access log names the matched route, never the path, query string or Basic user: each can carry an API key.
logger_class = "predictq.gunicorn_edge.RedactingLogger"
# Last, the X-Request-Id the app answered with (the client's own when sane, else a fresh one: api.request_id).
access_log_format = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s %(L)ss "%(a)s" request_id=%({x-request-id}o)s'
loglevel = _settings.log_level
# Containers often mount /tmp on overlayfs; heartbeat files on tmpfs avoid stalls there.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Header limits bound what one request can make the server parse before the app sees it.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Gunicorn's runtime control socket lives at one path per user: several servers on one host (tests, `predictq up`
# beside a container) would fight over it, and nothing here uses it.
control_socket_disable = True

_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_owned_metrics_dir: str | None = None


def on_starting(server: Any) -> None:
    """Give the workers one empty directory for Prometheus multiprocess counters, so /metrics sums them all."""
    global _owned_metrics_dir
    configured = os.environ.get(_METRICS_DIR_ENV)
    if configured:
        # Counters left by a previous run would be added to this one's.
        os.makedirs(configured, exist_ok=True)
        for name in os.listdir(configured):
            if name.endswith(".db"):
                os.unlink(os.path.join(configured, name))
        return
    _owned_metrics_dir = tempfile.mkdtemp(prefix="predictq-metrics-")
    os.environ[_METRICS_DIR_ENV] = _owned_metrics_dir


def post_worker_init(worker: Any) -> None:
    """Each API worker gives freed Arrow memory back (an upload parses thousands of short-lived buffers) and
    loads the model before its first request, so neither that request nor /readyz waits for it."""
    from api.services import EXTENSION_KEY
    from model.errors import ArtifactError
    from model.memory import use_returning_arrow_pool

    use_returning_arrow_pool()
    services = getattr(worker.wsgi, "extensions", {}).get(EXTENSION_KEY)
    if services is None:
        return
    try:
        scorer = services.scorer
    except ArtifactError as exc:
        # Left to the lazy path: /readyz and the scoring routes answer 503 naming the problem.
        worker.log.error("model not loaded: %s", exc)
        return
    worker.log.info("model %s loaded", scorer.version)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this server created."""
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
