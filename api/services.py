"""What the views use, created once per process and lazily: the scorer, the Redis client, the job service."""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api.auth import KeyRing, authenticate
from core.settings import Settings
from jobs.job_store import connect
from jobs.service import JobService
from model.scoring import Scorer, load_scorer
from worker.dispatch import job_service

EXTENSION_KEY = "predictq"


class Services:
    """Holds the process's one Scorer and JobService; nothing is loaded or connected until first use."""

    def __init__(self, settings: Settings, keyring: KeyRing, overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.keyring = keyring
        self._lock = threading.RLock()
        given = overrides or {}
        self._scorer: Scorer | None = given.get("scorer")
        self._redis: redis.Redis | None = given.get("redis")
        self._jobs: JobService | None = given.get("jobs")

    @property
    def scorer(self) -> Scorer:
        """The approved model's Scorer, loaded on first use."""
        if self._scorer is None:
            with self._lock:
                if self._scorer is None:
                    self._scorer = load_scorer(self.settings.model_path or None, self.settings.model_sha256)
        return self._scorer

    @property
    def redis(self) -> redis.Redis:
        """A pooled client of the service's Redis (connects on first command)."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    # Bounded retries of failed connects only: a command that timed out may have run, so it is
                    # not sent again; a request waits at most about three socket timeouts on Redis.
                    self._redis = connect(
                        self.settings.redis_url,
                        self.settings.redis_socket_timeout,
                        health_check_interval=30,
                        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2,
                                    supported_errors=(redis.ConnectionError,)),
                    )
        return self._redis

    @property
    def jobs(self) -> JobService:
        """The JobService on the shared Redis, queueing to Celery."""
        if self._jobs is None:
            with self._lock:
                if self._jobs is None:
                    self._jobs = job_service(self.redis, self.settings)
        return self._jobs


def services() -> Services:
    """The current application's services."""
    return current_app.extensions[EXTENSION_KEY]


def require_tenant() -> None:
    """Blueprint guard: resolve the caller's tenant into `g.tenant` or answer 401/503."""
    authenticate(services().keyring)
