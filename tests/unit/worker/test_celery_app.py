"""The Celery app's delivery guarantees are configured from Settings, without touching the network."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.settings import Settings
from worker.celery_app import SCORE_CHUNK, create_app


def test_delivery_settings_follow_the_settings() -> None:
    settings = dataclasses.replace(Settings(), redis_url="redis://127.0.0.1:1/0", queue_name="q1",
                                   task_soft_time_limit=30, task_time_limit=40)
    conf = create_app(settings).conf  # an unreachable broker: creating the app must not connect
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_ignore_result
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (30, 40)
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.task_default_queue == "q1"
    assert conf.broker_url == "redis://127.0.0.1:1/0"
    assert conf.broker_connection_retry_on_startup


def test_the_task_takes_ids_and_is_registered_by_name() -> None:
    from worker import tasks
    from worker.celery_app import app

    task = app.tasks[SCORE_CHUNK]
    assert task.run is tasks.score_chunk.run
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result


def test_enqueue_sends_ids_to_the_configured_queue() -> None:
    from worker.dispatch import enqueue_for

    sent: list[tuple[Any, ...]] = []

    class Recorder:
        def send_task(self, name: str, args: tuple[Any, ...], queue: str) -> None:
            sent.append((name, args, queue))

    enqueue_for(Recorder(), "q9")("job-1", 4)
    assert sent == [(SCORE_CHUNK, ("job-1", 4), "q9")]


def test_the_module_app_reads_the_environment_only_when_configured(monkeypatch: Any) -> None:
    import pytest

    from core.settings import SettingsError

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/7")
    app = create_app()  # nothing read yet: a bad variable would only fail when the worker starts
    monkeypatch.setenv("PREDICTQ_CHUNK_ROWS", "many")
    with pytest.raises(SettingsError, match="PREDICTQ_CHUNK_ROWS"):
        _ = app.conf.broker_url
    monkeypatch.delenv("PREDICTQ_CHUNK_ROWS")
    assert create_app().conf.broker_url == "redis://127.0.0.1:1/7"
