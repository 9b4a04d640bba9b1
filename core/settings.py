"""Configuration read from the environment, in one place (see the README's configuration table).

Each setting is declared once, as a field of `Settings` whose metadata names its environment variable
(`setting(...)`); `Settings.from_env()` and the README check (`env_names()`) both read that metadata.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


_KINDS = {int: "an integer", float: "a number"}


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> Any:
    """An int or float variable (the default's type), at least `minimum` (a float also finite)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    kind = type(default)
    minimum = kind(minimum)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {_KINDS[kind]}, got {raw!r}") from None
    if kind is int and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if kind is float and not minimum <= value < float("inf"):
        raise SettingsError(f"{name} must be a finite number of at least {minimum}, got {raw.strip()}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def setting(env: str, default: Any, *, minimum: float = 0, strip: bool = True,
            convert: Callable[[str], str] | None = None) -> Any:
    """A `Settings` field read from the variable `env`: a number must be at least `minimum`; a text is
    stripped (blank: the default) unless `strip` is false (then taken as set); `convert` is applied to a
    text as read."""
    return dataclasses.field(default=default, metadata={"env": env, "minimum": minimum, "strip": strip,
                                                         "convert": convert})


def _read(env: Mapping[str, str], field: dataclasses.Field[Any]) -> Any:
    """One field's value from `env`, per its metadata."""
    name, meta = field.metadata["env"], field.metadata
    if isinstance(field.default, int | float):
        return _number(env, name, field.default, meta["minimum"])
    value = _str(env, name, field.default) if meta["strip"] else env.get(name, field.default)
    return meta["convert"](value) if meta["convert"] else value


def env_names() -> dict[str, str]:
    """Field name -> environment variable, for every setting."""
    return {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service. Build with `Settings.from_env()`; override in tests with `replace`."""

    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0")
    key_prefix: str = setting("PREDICTQ_KEY_PREFIX", "pq")
    queue_name: str = setting("PREDICTQ_QUEUE", "predictq")
    model_path: str = setting("PREDICTQ_MODEL_PATH", "")  # empty: the approved model shipped in model/data
    # Empty: any artifact that passes its own checksum; else the parameters' sha256.
    model_sha256: str = setting("PREDICTQ_MODEL_SHA256", "")
    chunk_rows: int = setting("PREDICTQ_CHUNK_ROWS", 25_000, minimum=1)
    # A CSV/NDJSON upload is cut into record-aligned ranges of about this size.
    chunk_bytes: int = setting("PREDICTQ_CHUNK_BYTES", 16 * 1024**2, minimum=1)
    # Blob store of staged inputs and results; empty: <temp dir>/predictq-store.
    store_uri: str = setting("PREDICTQ_STORE_URI", "")
    # Free space the store must keep: staging that would use it fails (507).
    store_reserve_bytes: int = setting("PREDICTQ_STORE_RESERVE_BYTES", 1024**3)
    job_ttl_seconds: int = setting("PREDICTQ_JOB_TTL_SECONDS", 24 * 3600, minimum=1)
    max_sync_rows: int = setting("PREDICTQ_MAX_SYNC_ROWS", 10_000, minimum=1)
    max_upload_bytes: int = setting("PREDICTQ_MAX_UPLOAD_BYTES", 4 * 1024**3, minimum=1)
    task_soft_time_limit: int = setting("PREDICTQ_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
    task_time_limit: int = setting("PREDICTQ_TASK_TIME_LIMIT", 180, minimum=1)
    max_chunk_attempts: int = setting("PREDICTQ_MAX_CHUNK_ATTEMPTS", 3, minimum=1)
    # A chunk's lease is renewed every third of this while its worker scores it; a lease not renewed for this
    # long (worker dead, or cut off from Redis) is taken back by the reaper and the chunk requeued.
    chunk_lease_seconds: int = setting("PREDICTQ_CHUNK_LEASE_SECONDS", 30, minimum=1)
    # Seconds a Redis command (or connect) may take before it fails.
    redis_socket_timeout: float = setting("PREDICTQ_REDIS_SOCKET_TIMEOUT", 10.0, minimum=0.5)
    reaper_interval_seconds: int = setting("PREDICTQ_REAPER_INTERVAL_SECONDS", 30, minimum=1)
    stuck_job_seconds: int = setting("PREDICTQ_STUCK_JOB_SECONDS", 900, minimum=1)
    max_queued_rows: int = setting("PREDICTQ_MAX_QUEUED_ROWS", 50_000_000, minimum=1)
    max_queued_bytes: int = setting("PREDICTQ_MAX_QUEUED_BYTES", 20 * 1024**3, minimum=1)
    # "key:tenant,key2:tenant2" (plain keys; hashed on load).
    api_keys: str = setting("PREDICTQ_API_KEYS", "", strip=False)
    api_keys_file: str = setting("PREDICTQ_API_KEYS_FILE", "")
    auth_mode: str = setting("PREDICTQ_AUTH", "required")  # required | disabled
    rate_limit_submit: str = setting("PREDICTQ_RATE_LIMIT_SUBMIT", "60/minute")
    rate_limit_poll: str = setting("PREDICTQ_RATE_LIMIT_POLL", "1200/minute")
    rate_limit_predict: str = setting("PREDICTQ_RATE_LIMIT_PREDICT", "6000/minute")
    # An unsealed upload silent this long is failed by the reaper.
    upload_idle_seconds: int = setting("PREDICTQ_UPLOAD_IDLE_SECONDS", 300, minimum=1)
    # Prefork processes per `predictq worker`.
    worker_concurrency: int = setting("PREDICTQ_WORKER_CONCURRENCY", 2, minimum=1)
    api_port: int = setting("PREDICTQ_PORT", 1313, minimum=1)
    api_workers: int = setting("PREDICTQ_API_WORKERS", 2, minimum=1)  # gunicorn worker processes
    api_threads: int = setting("PREDICTQ_API_THREADS", 4, minimum=1)  # threads per gunicorn worker (gthread)
    log_level: str = setting("PREDICTQ_LOG_LEVEL", "info", convert=str.lower)
    # `predictq serve` writes a development key here when no key is configured.
    dev_key_file: str = setting("PREDICTQ_DEV_KEY_FILE", "")
    # A job summary warns when a figure is this far from training (see jobs.summary.DriftThresholds).
    # Missing rate above training by more than this (absolute).
    drift_missing_rate: float = setting("PREDICTQ_DRIFT_MISSING_RATE", 0.05)
    # |mean - training mean| / training sd above this.
    drift_mean_shift: float = setting("PREDICTQ_DRIFT_MEAN_SHIFT", 0.25)
    # A level's share differs from training by more than this (absolute).
    drift_level_share: float = setting("PREDICTQ_DRIFT_LEVEL_SHARE", 0.05)
    # Share of business_outcome 1 differs from 0.25 by more than this.
    drift_outcome_share: float = setting("PREDICTQ_DRIFT_OUTCOME_SHARE", 0.10)
    # Fewer scored rows than this: too few to warn about drift.
    drift_min_rows: int = setting("PREDICTQ_DRIFT_MIN_ROWS", 500)
    # "whsec_<base64>": signs job webhooks; empty: callback URLs are refused.
    webhook_secret: str = setting("PREDICTQ_WEBHOOK_SECRET", "")
    # Comma-separated host names, "*.suffix" patterns, IP addresses or networks.
    webhook_allowed_hosts: str = setting("PREDICTQ_WEBHOOK_ALLOWED_HOSTS", "")
    # "tenant=url" pairs, comma-separated: a tenant's callback when a job names none.
    webhook_defaults: str = setting("PREDICTQ_WEBHOOK_DEFAULTS", "")
    webhook_max_attempts: int = setting("PREDICTQ_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
    # First retry delay; each later one is 4 times longer (capped at 6 hours).
    webhook_retry_seconds: int = setting("PREDICTQ_WEBHOOK_RETRY_SECONDS", 10, minimum=1)
    webhook_timeout_seconds: int = setting("PREDICTQ_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `PREDICTQ_*` variable (and `REDIS_URL`), falling back to the defaults above."""
        env = os.environ if env is None else env
        return cls(**{f.name: _read(env, f) for f in dataclasses.fields(cls)}).validated()

    def validated(self) -> Settings:
        """Fail fast on combinations that cannot work."""
        if self.task_soft_time_limit >= self.task_time_limit:
            raise SettingsError("PREDICTQ_TASK_SOFT_TIME_LIMIT must be below PREDICTQ_TASK_TIME_LIMIT")
        if self.stuck_job_seconds <= self.visibility_timeout:
            # Lost messages come back after the visibility timeout; a job must not be declared stuck before.
            raise SettingsError(
                f"PREDICTQ_STUCK_JOB_SECONDS ({self.stuck_job_seconds}) must exceed the visibility timeout "
                f"(PREDICTQ_TASK_TIME_LIMIT + 60 = {self.visibility_timeout})"
            )
        if self.chunk_lease_seconds < 2 * self.redis_socket_timeout:
            # A renewal held up by one timed-out command must still land before the lease runs out.
            raise SettingsError(
                f"PREDICTQ_CHUNK_LEASE_SECONDS ({self.chunk_lease_seconds}) must be at least twice "
                f"PREDICTQ_REDIS_SOCKET_TIMEOUT ({self.redis_socket_timeout})"
            )
        if self.auth_mode not in {"required", "disabled"}:
            raise SettingsError(f"PREDICTQ_AUTH must be 'required' or 'disabled', got {self.auth_mode!r}")
        self._check_webhooks()
        return self

    def _check_webhooks(self) -> None:
        from core.webhooks import decode_secret, tenant_defaults

        try:
            if self.webhook_secret:
                decode_secret(self.webhook_secret)
        except ValueError as exc:
            raise SettingsError(f"PREDICTQ_WEBHOOK_SECRET: {exc}") from None
        try:
            tenant_defaults(self.webhook_defaults)
        except ValueError as exc:
            raise SettingsError(f"PREDICTQ_WEBHOOK_DEFAULTS: {exc}") from None

    @property
    def visibility_timeout(self) -> int:
        """Broker redelivery delay for unacknowledged tasks: always above the hard time limit."""
        return self.task_time_limit + 60

