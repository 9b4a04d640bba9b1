"""Celery tasks (thin: ids in, job logic in worker.processing) and the per-process worker runtime."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import signals

from model.memory import use_returning_arrow_pool
from predictq.settings import Settings
from worker.blob_store import BlobStore
from worker.celery_app import SCORE_CHUNK, app
from worker.job_store import JobStore
from worker.processing import ChunkProcessor, Enqueue
from worker.reaper import ReaperThread

log = logging.getLogger(__name__)

_processor: ChunkProcessor | None = None
_processor_lock = threading.Lock()
# The model loaded by the worker's main process before the pool forks; pool processes inherit it.
_preloaded_scorer: Any = None
_reaper: ReaperThread | None = None


def enqueue_for(celery_app: Any, queue: str) -> Enqueue:
    """A function that queues score_chunk(job_id, index) on `queue` through `celery_app`."""

    def enqueue(job_id: str, index: int) -> None:
        celery_app.send_task(SCORE_CHUNK, args=(job_id, index), queue=queue)

    return enqueue


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
                store = JobStore(redis.Redis.from_url(settings.redis_url), settings.key_prefix)
                scorer = _preloaded_scorer if _preloaded_scorer is not None else load_model(settings)
                _processor = ChunkProcessor(
                    store, blob_store(settings), scorer, settings.max_chunk_attempts,
                    enqueue_for(app, settings.queue_name),
                )
    return _processor


@app.task(name=SCORE_CHUNK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def score_chunk(job_id: str, index: int) -> str:
    """Score chunk `index` of job `job_id` and commit it once; safe to run any number of times."""
    outcome = processor().process(job_id, int(index))
    log.info("job %s chunk %s: %s", job_id, index, outcome)
    return outcome


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
    global _processor
    _processor = None


@signals.worker_process_init.connect
def _return_freed_memory(**_: Any) -> None:
    """Pool processes give freed Arrow memory back: every chunk decodes, scores and encodes short-lived buffers."""
    use_returning_arrow_pool()


@signals.worker_ready.connect
def _start_reaper(**_: Any) -> None:
    """Run the reaper in the worker's main process: no extra service, one pass at a time cluster-wide."""
    global _reaper
    settings = Settings.from_env()
    store = JobStore(redis.Redis.from_url(settings.redis_url), settings.key_prefix)
    _reaper = ReaperThread(store, blob_store(settings), settings, enqueue_for(app, settings.queue_name))
    _reaper.start()


@signals.worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    """Stop the reaper thread with the worker."""
    if _reaper is not None:
        _reaper.stop()
