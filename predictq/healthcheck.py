"""Health probes run by the container runtime: `python -m predictq.healthcheck [api|worker|redis|model]`.

Exit 0 when healthy, 1 otherwise, with one line saying why. With no argument the role comes from
PREDICTQ_ROLE (default `api`), so the image's one HEALTHCHECK fits both the api and worker containers.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from core.settings import Settings
from predictq.localredis import redis_answers

ROLES = ("api", "worker", "redis", "model")


def check_api(settings: Settings, timeout: float = 3.0) -> str:
    """GET /healthz on this host's API port must answer 200."""
    url = os.environ.get("PREDICTQ_HEALTHCHECK_URL") or f"http://127.0.0.1:{settings.api_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        raise HealthError(f"api: {url} did not answer: {exc}") from None
    if status != 200:
        raise HealthError(f"api: {url} answered {status}")
    return f"api: {url} answered 200"


def check_worker(settings: Settings, timeout: float = 5.0) -> str:
    """This host's Celery node (named by `predictq worker`) must answer a broadcast ping."""
    from worker.celery_app import app  # imported here: only the worker role has a reason to load Celery

    node = os.environ.get("PREDICTQ_WORKER_NODE") or f"predictq@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=timeout)
    if not any(node in reply for reply in replies):
        raise HealthError(f"worker: {node} did not answer a ping within {timeout}s")
    return f"worker: {node} answered"


def check_redis(settings: Settings, timeout: float = 2.0) -> str:
    """The configured Redis must answer PING."""
    if not redis_answers(settings.redis_url, timeout=timeout):
        raise HealthError(f"redis: {settings.redis_url} did not answer PING")
    return f"redis: {settings.redis_url} answered"


def check_model(settings: Settings) -> str:
    """The configured model artifact must load and verify (the image build runs this)."""
    from model.scoring import load_scorer  # imported here: loading the model is this check's whole job

    scorer = load_scorer(settings.model_path or None, settings.model_sha256)
    return f"model: version {scorer.version} sha256 {scorer.sha256} verified"


class HealthError(RuntimeError):
    """A probe found its component unhealthy."""


CHECKS: dict[str, Callable[[Settings], str]] = {
    "api": check_api,
    "worker": check_worker,
    "redis": check_redis,
    "model": check_model,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe named by argv[0] (or PREDICTQ_ROLE); print one line; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    role = args[0] if args else os.environ.get("PREDICTQ_ROLE", "api")
    if role not in CHECKS:
        print(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    try:
        print(CHECKS[role](Settings.from_env()))
    except Exception as exc:  # a probe reports any failure as unhealthy rather than a traceback
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
