"""Celery tasks (thin: ids in, job logic in jobs.processing) and the per-process worker runtime."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import signals

from core.logging_context import add_filter, job_id_var, request_id_var
from core.settings import Settings
from jobs.blob_store import BlobStore
from jobs.job_store import JobStore, connect
from jobs.processing import ChunkProcessor
from jobs.reaper import ReaperThread
from jobs.webhooks import deliver
from model.memory import use_returning_arrow_pool
from worker.celery_app import DELIVER_WEBHOOK, SCORE_CHUNK, app
from worker.dispatch import enqueue_for, notify_for

log = logging.getLogger(__name__)

_processor: ChunkProcessor | None = None
_processor_lock = threading.Lock()
# The model loaded by the worker's main process before the pool forks; pool processes inherit it.
_preloaded_scorer: Any = None
_reaper: ReaperThread | None = None
_webhook_store: JobStore | None = None


def job_store(settings: Settings) -> JobStore:
    """A store on the settings' Redis that queues the webhook of each job it closes."""
    return JobStore(connect(settings.redis_url, settings.redis_socket_timeout), settings.key_prefix,
                    on_closed=notify_for(app, settings.queue_name))


def load_model(settings: Settings) -> Any:
    """Load the settings' model (importing the scoring stack on first use) and log it."""
    from model.scoring import load_scorer

    scorer = load_scorer(settings.model_path or None, settings.model_sha256)
    log.info("model %s (sha256 %s) loaded", scorer.version, scorer.sha256)
    return scorer


def blob_store(settings: Settings) -> BlobStore:
    """The settings' blob store (staged inputs and results)."""
    return BlobStore.from_uri(settings.store_uri, settings.store_reserve_bytes)


def processor() -> ChunkProcessor:
    """This process's chunk processor, built on the first chunk with the preloaded model (else loading it)."""
    global _processor
    if _processor is None:
        with _processor_lock:
            if _processor is None:
                settings = Settings.from_env()
                store = job_store(settings)
                scorer = _preloaded_scorer if _preloaded_scorer is not None else load_model(settings)
                # A commit cut off from Redis is tried again until the soft time limit stops the attempt.
                _processor = ChunkProcessor(
                    store, blob_store(settings), scorer, settings.max_chunk_attempts,
                    enqueue_for(app, settings.queue_name), lease_seconds=settings.chunk_lease_seconds,
                    commit_patience=settings.task_soft_time_limit,
                )
    return _processor


@app.task(name=SCORE_CHUNK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def score_chunk(job_id: str, index: int) -> str:
    """Score chunk `index` of job `job_id` and commit it once; safe to run any number of times."""
    outcome = processor().process(job_id, int(index))
    log.info("job %s chunk %s: %s", job_id, index, outcome)
    return outcome


def webhook_store() -> JobStore:
    """This process's store for webhook deliveries (no model needed)."""
    global _webhook_store
    if _webhook_store is None:
        _webhook_store = job_store(Settings.from_env())
    return _webhook_store


@app.task(name=DELIVER_WEBHOOK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
          max_retries=None)
def deliver_webhook(self: Any, job_id: str, attempt: int = 1) -> str:
    """Make delivery attempt `attempt` of the job's webhook; on failure, queue the next one after a backoff
    (the task retries with a countdown; `PREDICTQ_WEBHOOK_MAX_ATTEMPTS` bounds them)."""
    outcome = deliver(webhook_store(), Settings.from_env(), job_id, int(attempt))
    if outcome.retry_in is not None:
        raise self.retry(args=(job_id, int(attempt) + 1), countdown=outcome.retry_in)
    return outcome.state


# Context tokens of the task running in this process, by task id (set before it runs, reset after it ended).
_task_context: dict[str, list[tuple[Any, Any]]] = {}


@signals.task_prerun.connect
def _enter_job_context(task_id: str, task: Any, args: tuple[Any, ...] = (), **_: Any) -> None:
    """A job's task logs with its job id and the id of the request that submitted the job, on every line up to
    and including Celery's own "succeeded" or "failed" line (logged before `task_postrun`)."""
    if task.name not in {SCORE_CHUNK, DELIVER_WEBHOOK} or not args:
        return
    job_id = str(args[0])
    try:
        request_id = webhook_store().request_id(job_id)
    except redis.RedisError:
        request_id = None
    _task_context[task_id] = [(job_id_var, job_id_var.set(job_id)), (request_id_var, request_id_var.set(request_id))]


@signals.task_postrun.connect
def _leave_job_context(task_id: str, **_: Any) -> None:
    for var, token in reversed(_task_context.pop(task_id, [])):
        var.reset(token)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_context_on_handlers(logger: logging.Logger, **_: Any) -> None:
    """Every handler Celery sets up gets the filter behind `%(log_context)s` in the worker's log formats."""
    add_filter(logger.handlers)


@signals.celeryd_after_setup.connect
def _preload_model(**_: Any) -> None:
    """Load the model in the main process before the pool forks, so every pool process starts with it.

    `celeryd_after_setup` rather than `worker_init`: both come before the pool starts, but only this one
    comes after Celery set up logging, so the load is logged.

    A failure is logged and left to the lazy path: each pool process tries again on its first chunk.
    """
    global _preloaded_scorer
    try:
        _preloaded_scorer = load_model(Settings.from_env())
    except Exception:
        log.exception("model preload failed; pool processes will load it on their first chunk")


@signals.worker_process_init.connect
def _forget_inherited_state(**_: Any) -> None:
    """A forked pool process builds its own Redis connections rather than sharing the parent's sockets.

    The preloaded model is kept: it holds no connection, and sharing it is the point of loading it early.
    """
    global _processor, _webhook_store
    _processor = None
    _webhook_store = None


@signals.worker_process_init.connect
def _return_freed_memory(**_: Any) -> None:
    """Pool processes give freed Arrow memory back: every chunk decodes, scores and encodes short-lived buffers."""
    use_returning_arrow_pool()


@signals.worker_ready.connect
def _start_reaper(**_: Any) -> None:
    """Run the reaper in the worker's main process: no extra service, one pass at a time cluster-wide."""
    global _reaper
    settings = Settings.from_env()
    _reaper = ReaperThread(job_store(settings), blob_store(settings), settings, enqueue_for(app, settings.queue_name))
    _reaper.start()


@signals.worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    """Stop the reaper thread with the worker."""
    if _reaper is not None:
        _reaper.stop()
