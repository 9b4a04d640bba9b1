"""How job logic reaches Celery: functions that queue chunk and webhook tasks, and a JobService wired to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from core.settings import Settings
from jobs.blob_store import BlobStore
from jobs.processing import Enqueue
from jobs.service import JobService
from worker.celery_app import DELIVER_WEBHOOK, SCORE_CHUNK, create_app


def enqueue_for(celery_app: Any, queue: str) -> Enqueue:
    """A function that queues score_chunk(job_id, index) on `queue` through `celery_app`."""

    def enqueue(job_id: str, index: int) -> None:
        celery_app.send_task(SCORE_CHUNK, args=(job_id, index), queue=queue)

    return enqueue


def notify_for(celery_app: Any, queue: str) -> Callable[[str], None]:
    """A function that queues the first delivery attempt of a closed job's webhook on `queue`."""

    def notify(job_id: str) -> None:
        celery_app.send_task(DELIVER_WEBHOOK, args=(job_id, 1), queue=queue)

    return notify


def job_service(redis_client: redis.Redis, settings: Settings, *, blobs: BlobStore | None = None) -> JobService:
    """A JobService whose chunks and webhooks go to the settings' Celery queue (one Celery app per service)."""
    celery_app = create_app(settings)
    return JobService(redis_client, settings, enqueue=enqueue_for(celery_app, settings.queue_name),
                      notify=notify_for(celery_app, settings.queue_name), blobs=blobs)
