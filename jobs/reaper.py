"""The reaper: requeues chunks whose worker or message vanished, fails jobs that can no longer finish, and
deletes the blob-store directories of expired jobs (Redis expires a job's keys by itself, never its files).

It needs no extra service: every worker's main process runs `ReaperThread`, and a Redis lock (SET NX EX)
lets one pass run per interval across the whole cluster. `JobService.get` also checks the job it reads.
Ages are judged by the store's clock (`JobStore.clock`), the one that stamped the times they compare.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from core.settings import Settings
from core.states import OPEN_STATES, JobState
from jobs.blob_store import BlobStore
from jobs.job_store import JobStore
from jobs.keys import reaper_lock
from jobs.lifecycle import close_job
from jobs.processing import Enqueue

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: list[tuple[str, int]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    expired_deleted: list[str] = field(default_factory=list)


def stuck_reason(
    fields: dict[str, str], settings: Settings, now: float, cluster_last_commit: Callable[[], float]
) -> tuple[str, str] | None:
    """Why an open job can no longer finish (a reason code and a message), or None.

    Either its upload went silent, or neither it nor any other job moved for `stuck_job_seconds`: while the
    cluster commits chunks, a job that waits its turn behind a backlog is queued, not stuck.
    """
    if fields.get("state") not in OPEN_STATES:
        return None
    if fields.get("sealed") != "1" and now - float(fields["upload_heartbeat"]) > settings.upload_idle_seconds:
        return ("upload_incomplete", f"upload interrupted: no data arrived for {settings.upload_idle_seconds}s "
                "and the upload never completed")
    # The cluster-wide time is read only for a job that is itself idle: polls of a moving job cost nothing more.
    if (now - float(fields["last_activity"]) > settings.stuck_job_seconds
            and now - cluster_last_commit() > settings.stuck_job_seconds):
        return ("stuck", f"job stuck: no chunk of it or of any other job started or finished for "
                f"{settings.stuck_job_seconds}s (are any workers running?)")
    return None


def fail_if_stuck(store: JobStore, blobs: BlobStore, settings: Settings, job_id: str,
                  fields: dict[str, str]) -> str | None:
    """Fail the job when `stuck_reason` says so (deleting its staged inputs); returns the reason given."""
    stuck = stuck_reason(fields, settings, store.clock(), store.last_cluster_commit)
    if stuck is None:
        return None
    code, reason = stuck
    # An upload that never ended is failed like one cut short: nothing it staged is shown as a result.
    after = close_job(store, blobs, job_id, JobState.FAILED, code, reason, purge=code == "upload_incomplete")
    if after == JobState.FAILED:
        log.warning("job %s failed by the reaper: %s", job_id, reason)
        return reason
    return None


def requeue_stale_leases(store: JobStore, settings: Settings, job_id: str, enqueue: Enqueue, now: float) -> list[int]:
    """Requeue chunks whose lease was neither taken nor renewed for `chunk_lease_seconds` (the worker died, or
    cannot reach Redis); the next start counts another attempt. A live attempt renews its lease every third of
    that, so only a lost or cut-off one goes stale; if it reaches Redis again, its commit is refused or, when
    it comes first, the other attempt's is: a chunk commits once either way."""
    limit = settings.chunk_lease_seconds
    renewals = store.lease_renewals(job_id)
    requeued = []
    for index, lease in sorted(store.leases(job_id).items()):
        if now - max(lease.started_at, renewals.get(index, 0.0)) <= limit:
            continue
        reason = (f"attempt {lease.attempt} on {lease.hostname} (pid {lease.pid}) held the chunk without renewing "
                  f"its lease for more than {limit}s (worker lost, or cut off from Redis)")
        if store.release_lease(job_id, index, lease.raw, reason):
            enqueue(job_id, index)
            requeued.append(index)
    return requeued


def requeue_orphans(store: JobStore, settings: Settings, job_id: str, fields: dict[str, str], enqueue: Enqueue,
                    now: float) -> list[int]:
    """Requeue staged chunks with no lease and no commit once the job has been idle past the visibility timeout.

    The broker redelivers a lost unacknowledged message after that timeout by itself; this also covers a
    message lost outright. A duplicate is harmless (the commit guard), and it is repeated at most once per
    timeout.
    """
    idle_since = max(float(fields["last_activity"]), float(fields.get("orphans_requeued_at") or 0))
    if now - idle_since <= settings.visibility_timeout:
        return []
    waiting = set(store.staged_indexes(job_id)) - set(store.committed(job_id)) - set(store.leases(job_id))
    if not waiting or not store.mark_requeued(job_id):
        return []
    for index in sorted(waiting):
        enqueue(job_id, index)
    return sorted(waiting)


def reap_once(store: JobStore, blobs: BlobStore, settings: Settings, enqueue: Enqueue) -> ReapReport:
    """One pass over the active jobs: drop closed or expired ones, requeue stale chunks, fail stuck jobs."""
    report = ReapReport()
    job_ids = store.active_jobs()
    for job_id, fields in zip(job_ids, store.many_fields(job_ids), strict=True):
        if fields is None or fields.get("state") not in OPEN_STATES:
            store.forget_active(job_id)
            report.forgotten.append(job_id)
            continue
        now = store.clock()
        report.requeued += [(job_id, i) for i in requeue_stale_leases(store, settings, job_id, enqueue, now)]
        report.requeued += [(job_id, i) for i in requeue_orphans(store, settings, job_id, fields, enqueue, now)]
        reason = fail_if_stuck(store, blobs, settings, job_id, fields)
        if reason is not None:
            report.failed[job_id] = reason
    report.expired_deleted = delete_expired(blobs, store.clock())
    return report


def delete_expired(blobs: BlobStore, now: float) -> list[str]:
    """Delete the store directories of jobs past the expiry their id carries (found from the store alone)."""
    expired = blobs.expired_jobs(now)
    for job_id in expired:
        blobs.delete_job(job_id)
    return expired


def try_reap(store: JobStore, blobs: BlobStore, settings: Settings, enqueue: Enqueue) -> ReapReport | None:
    """Run a pass unless another process ran one within the last interval."""
    # The lock is never released early: it spaces passes by the interval across every worker.
    if not store.redis.set(reaper_lock(store.prefix), "1", nx=True, ex=settings.reaper_interval_seconds):
        return None
    return reap_once(store, blobs, settings, enqueue)


class ReaperThread(threading.Thread):
    """Daemon thread calling `try_reap` every `reaper_interval_seconds` until stopped."""

    def __init__(self, store: JobStore, blobs: BlobStore, settings: Settings, enqueue: Enqueue) -> None:
        super().__init__(name="predictq-reaper", daemon=True)
        self.store, self.blobs, self.settings, self.enqueue = store, blobs, settings, enqueue
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Loop until `stop`; a failed pass (Redis down, say) is logged and retried next interval."""
        while not self._stop_event.wait(self.settings.reaper_interval_seconds):
            try:
                report = try_reap(self.store, self.blobs, self.settings, self.enqueue)
            except redis.RedisError as exc:
                log.warning("reaper pass skipped, Redis unavailable (%s); retrying in %ss", exc,
                            self.settings.reaper_interval_seconds)
                continue
            except Exception:
                log.exception("reaper pass failed; retrying in %ss", self.settings.reaper_interval_seconds)
                continue
            if report and (report.requeued or report.failed):
                log.warning("reaper: requeued %s, failed %s", report.requeued, report.failed)
            if report and report.expired_deleted:
                log.info("reaper: deleted the files of expired jobs %s", report.expired_deleted)

    def stop(self) -> None:
        """Ask the loop to end after the current pass."""
        self._stop_event.set()
