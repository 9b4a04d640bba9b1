"""What the views use, created once per process and lazily: the scorer, the Redis client, the job service."""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api.auth import KeyRing, authenticate
from predictq.settings import Settings

EXTENSION_KEY = "predictq"


class Services:
    """Holds the process's one Scorer and JobService; nothing is loaded or connected until first use."""

    def __init__(self, settings: Settings, keyring: KeyRing, overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.keyring = keyring
        self._lock = threading.RLock()
        self._scorer: Any = (overrides or {}).get("scorer")
        self._redis: Any = (overrides or {}).get("redis")
        self._jobs: Any = (overrides or {}).get("jobs")

    @property
    def scorer(self) -> Any:
        """The approved model's Scorer, loaded on first use."""
        if self._scorer is None:
            with self._lock:
                if self._scorer is None:
                    from model.scoring import load_scorer

                    self._scorer = load_scorer(self.settings.model_path or None)
        return self._scorer

    @property
    def scorer_loaded(self) -> bool:
        """True once the scorer is in memory (readiness does not force a load)."""
        return self._scorer is not None

    @property
    def redis(self) -> redis.Redis:
        """A pooled client of the service's Redis (connects on first command)."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    # Bounded retries: a request (or a readiness probe) waits at most about a second on Redis.
                    self._redis = redis.Redis.from_url(
                        self.settings.redis_url,
                        socket_connect_timeout=2,
                        health_check_interval=30,
                        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                    )
        return self._redis

    @property
    def jobs(self) -> Any:
        """The worker layer's JobService on the shared Redis."""
        if self._jobs is None:
            with self._lock:
                if self._jobs is None:
                    from worker.jobs import JobService

                    self._jobs = JobService(self.redis, self.settings)
        return self._jobs


def services() -> Services:
    """The current application's services."""
    return current_app.extensions[EXTENSION_KEY]


def require_tenant() -> None:
    """Blueprint guard: resolve the caller's tenant into `g.tenant` or answer 401/503."""
    authenticate(services().keyring)
