"""Closing a job together with what it owns in the blob store (Redis TTLs cannot delete files)."""

from __future__ import annotations

from collections.abc import Mapping

from core.states import JobState
from jobs.blob_store import BlobStore, Deleted
from jobs.job_store import JobStore

INSUFFICIENT_STORAGE = "insufficient_storage"


def close_job(store: JobStore, blobs: BlobStore, job_id: str, state: JobState, code: str, reason: str, *,
              purge: bool = False, record: Mapping[str, str | int] | None = None) -> str:
    """Move an open job to `state` (cancelled or failed) and delete its staged inputs at once.

    Results already committed stay readable until the job expires, unless `purge` (a job whose input never
    arrived whole): then every file of the job goes now. Returns the state after the call.
    """
    after = store.close(job_id, state, code, reason, purge=purge, record=record)
    if after == state:
        if purge:
            blobs.delete_job(job_id)
        else:
            blobs.delete_many(blobs.staged_files(job_id))
    return after


def fail_for_storage(store: JobStore, blobs: BlobStore, job_id: str, message: str) -> Deleted:
    """Fail a job that does not fit in the store and delete everything it wrote there at once."""
    store.close(job_id, JobState.FAILED, INSUFFICIENT_STORAGE, f"{INSUFFICIENT_STORAGE}: {message}", purge=True)
    return blobs.delete_job(job_id)


def discard_late(store: JobStore, blobs: BlobStore, job_id: str, paths: list[str]) -> None:
    """Delete files written for a job that closed meanwhile; all of the job's directory when the job was
    purged or is gone (writing them may have recreated folders its purge had deleted)."""
    blobs.delete_many(paths)
    fields = store.fields(job_id)
    if fields is None or fields.get("purged_at"):
        blobs.delete_job(job_id)
