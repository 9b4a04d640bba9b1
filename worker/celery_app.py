"""The one Celery app: `celery -A worker.celery_app worker -Q <PREDICTQ_QUEUE> --pool prefork`.

The module-level `app` reads `Settings.from_env()` lazily, when its configuration is first used (so importing
this module reads nothing); creating the app opens no connection.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from core.settings import Settings

SCORE_CHUNK = "predictq.score_chunk"
DELIVER_WEBHOOK = "predictq.deliver_webhook"
# Celery's own formats with the request and job ids of the task being run (see core.logging_context).
WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(log_context)s%(message)s"
WORKER_TASK_LOG_FORMAT = ("[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: "
                          "%(log_context)s%(message)s")


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for `settings`: Redis broker, late acks, one message in hand per process, no results."""
    return dict(
        broker_url=settings.redis_url,
        task_acks_late=True,  # a task is acknowledged after it ran, so a crash hands the chunk to another worker
        task_reject_on_worker_lost=True,  # a killed pool process requeues its message instead of acking it
        worker_prefetch_multiplier=1,
        # Redis redelivers an unacknowledged message after this; it must exceed the hard limit or a slow
        # chunk would run twice while still alive (harmless thanks to the commit guard, but wasted work).
        # Socket timeouts and keepalive: a worker cut off from Redis notices the dead connection and reconnects
        # instead of waiting on it for the kernel's TCP timeout (minutes).
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_socket_timeout,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        task_ignore_result=True,  # the job store holds every outcome
        task_default_queue=settings.queue_name,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_send_task_events=False,
        worker_log_format=WORKER_LOG_FORMAT,
        worker_task_log_format=WORKER_TASK_LOG_FORMAT,
    )


def create_app(settings: Settings | None = None) -> Celery:
    """The Celery app for `settings`; None reads the environment when the configuration is first needed."""
    app = Celery("predictq", include=["worker.tasks"])
    if settings is None:
        app.add_defaults(lambda: celery_config(Settings.from_env()))
    else:
        app.conf.update(celery_config(settings))
    return app


app = create_app()
