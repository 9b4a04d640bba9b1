"""Configuration read from the environment, in one place (see the README's configuration table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value < float("inf"):
        raise SettingsError(f"{name} must be a finite number of at least {minimum}, got {raw.strip()}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service. Build with `Settings.from_env()`; override in tests with `replace`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "pq"
    queue_name: str = "predictq"
    model_path: str = ""  # empty: the approved model shipped in model/data
    model_sha256: str = ""  # empty: any artifact that passes its own checksum; else the parameters' sha256
    chunk_rows: int = 25_000
    chunk_bytes: int = 16 * 1024**2  # a CSV/NDJSON upload is cut into record-aligned ranges of about this size
    store_uri: str = ""  # blob store of staged inputs and results; empty: <temp dir>/predictq-store
    store_reserve_bytes: int = 1024**3  # free space the store must keep: staging that would use it fails (507)
    job_ttl_seconds: int = 24 * 3600
    max_sync_rows: int = 10_000
    max_upload_bytes: int = 4 * 1024**3
    task_soft_time_limit: int = 120
    task_time_limit: int = 180
    max_chunk_attempts: int = 3
    reaper_interval_seconds: int = 30
    stuck_job_seconds: int = 900
    max_queued_rows: int = 50_000_000
    max_queued_bytes: int = 20 * 1024**3
    api_keys: str = ""  # "key:tenant,key2:tenant2" (plain keys; hashed on load)
    api_keys_file: str = ""
    auth_mode: str = "required"  # required | disabled
    rate_limit_submit: str = "60/minute"
    rate_limit_poll: str = "1200/minute"
    rate_limit_predict: str = "6000/minute"
    upload_idle_seconds: int = 300  # an unsealed upload silent this long is failed by the reaper
    worker_concurrency: int = 2  # prefork processes per `predictq worker`
    api_port: int = 1313
    api_workers: int = 2  # gunicorn worker processes
    api_threads: int = 4  # threads per gunicorn worker (gthread)
    log_level: str = "info"
    dev_key_file: str = ""  # `predictq serve` writes a development key here when no key is configured
    # A job summary warns when a figure is this far from training (see jobs.summary.DriftThresholds).
    drift_missing_rate: float = 0.05  # missing rate above training by more than this (absolute)
    drift_mean_shift: float = 0.25  # |mean - training mean| / training sd above this
    drift_level_share: float = 0.05  # a level's share differs from training by more than this (absolute)
    drift_outcome_share: float = 0.10  # share of business_outcome 1 differs from 0.25 by more than this
    drift_min_rows: int = 500  # fewer scored rows than this: too few to warn about drift
    webhook_secret: str = ""  # "whsec_<base64>": signs job webhooks; empty: callback URLs are refused
    webhook_allowed_hosts: str = ""  # comma-separated host names, "*.suffix" patterns, IP addresses or networks
    webhook_defaults: str = ""  # "tenant=url" pairs, comma-separated: a tenant's callback when a job names none
    webhook_max_attempts: int = 8
    webhook_retry_seconds: int = 10  # first retry delay; each later one is 4 times longer (capped at 6 hours)
    webhook_timeout_seconds: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `PREDICTQ_*` variable (and `REDIS_URL`), falling back to the defaults above."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            redis_url=_str(env, "REDIS_URL", d.redis_url),
            key_prefix=_str(env, "PREDICTQ_KEY_PREFIX", d.key_prefix),
            queue_name=_str(env, "PREDICTQ_QUEUE", d.queue_name),
            model_path=_str(env, "PREDICTQ_MODEL_PATH", d.model_path),
            model_sha256=_str(env, "PREDICTQ_MODEL_SHA256", d.model_sha256),
            chunk_rows=_int(env, "PREDICTQ_CHUNK_ROWS", d.chunk_rows, minimum=1),
            chunk_bytes=_int(env, "PREDICTQ_CHUNK_BYTES", d.chunk_bytes, minimum=1),
            store_uri=_str(env, "PREDICTQ_STORE_URI", d.store_uri),
            store_reserve_bytes=_int(env, "PREDICTQ_STORE_RESERVE_BYTES", d.store_reserve_bytes),
            job_ttl_seconds=_int(env, "PREDICTQ_JOB_TTL_SECONDS", d.job_ttl_seconds, minimum=1),
            max_sync_rows=_int(env, "PREDICTQ_MAX_SYNC_ROWS", d.max_sync_rows, minimum=1),
            max_upload_bytes=_int(env, "PREDICTQ_MAX_UPLOAD_BYTES", d.max_upload_bytes, minimum=1),
            task_soft_time_limit=_int(env, "PREDICTQ_TASK_SOFT_TIME_LIMIT", d.task_soft_time_limit, 1),
            task_time_limit=_int(env, "PREDICTQ_TASK_TIME_LIMIT", d.task_time_limit, minimum=1),
            max_chunk_attempts=_int(env, "PREDICTQ_MAX_CHUNK_ATTEMPTS", d.max_chunk_attempts, minimum=1),
            reaper_interval_seconds=_int(env, "PREDICTQ_REAPER_INTERVAL_SECONDS", d.reaper_interval_seconds, 1),
            stuck_job_seconds=_int(env, "PREDICTQ_STUCK_JOB_SECONDS", d.stuck_job_seconds, minimum=1),
            max_queued_rows=_int(env, "PREDICTQ_MAX_QUEUED_ROWS", d.max_queued_rows, minimum=1),
            max_queued_bytes=_int(env, "PREDICTQ_MAX_QUEUED_BYTES", d.max_queued_bytes, minimum=1),
            api_keys=env.get("PREDICTQ_API_KEYS", d.api_keys),
            api_keys_file=_str(env, "PREDICTQ_API_KEYS_FILE", d.api_keys_file),
            auth_mode=_str(env, "PREDICTQ_AUTH", d.auth_mode),
            rate_limit_submit=_str(env, "PREDICTQ_RATE_LIMIT_SUBMIT", d.rate_limit_submit),
            rate_limit_poll=_str(env, "PREDICTQ_RATE_LIMIT_POLL", d.rate_limit_poll),
            rate_limit_predict=_str(env, "PREDICTQ_RATE_LIMIT_PREDICT", d.rate_limit_predict),
            upload_idle_seconds=_int(env, "PREDICTQ_UPLOAD_IDLE_SECONDS", d.upload_idle_seconds, minimum=1),
            worker_concurrency=_int(env, "PREDICTQ_WORKER_CONCURRENCY", d.worker_concurrency, minimum=1),
            api_port=_int(env, "PREDICTQ_PORT", d.api_port, minimum=1),
            api_workers=_int(env, "PREDICTQ_API_WORKERS", d.api_workers, minimum=1),
            api_threads=_int(env, "PREDICTQ_API_THREADS", d.api_threads, minimum=1),
            log_level=_str(env, "PREDICTQ_LOG_LEVEL", d.log_level).lower(),
            dev_key_file=_str(env, "PREDICTQ_DEV_KEY_FILE", d.dev_key_file),
            drift_missing_rate=_float(env, "PREDICTQ_DRIFT_MISSING_RATE", d.drift_missing_rate),
            drift_mean_shift=_float(env, "PREDICTQ_DRIFT_MEAN_SHIFT", d.drift_mean_shift),
            drift_level_share=_float(env, "PREDICTQ_DRIFT_LEVEL_SHARE", d.drift_level_share),
            drift_outcome_share=_float(env, "PREDICTQ_DRIFT_OUTCOME_SHARE", d.drift_outcome_share),
            drift_min_rows=_int(env, "PREDICTQ_DRIFT_MIN_ROWS", d.drift_min_rows),
            webhook_secret=_str(env, "PREDICTQ_WEBHOOK_SECRET", d.webhook_secret),
            webhook_allowed_hosts=_str(env, "PREDICTQ_WEBHOOK_ALLOWED_HOSTS", d.webhook_allowed_hosts),
            webhook_defaults=_str(env, "PREDICTQ_WEBHOOK_DEFAULTS", d.webhook_defaults),
            webhook_max_attempts=_int(env, "PREDICTQ_WEBHOOK_MAX_ATTEMPTS", d.webhook_max_attempts, minimum=1),
            webhook_retry_seconds=_int(env, "PREDICTQ_WEBHOOK_RETRY_SECONDS", d.webhook_retry_seconds, minimum=1),
            webhook_timeout_seconds=_int(env, "PREDICTQ_WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_seconds, 1),
        ).validated()

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

