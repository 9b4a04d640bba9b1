"""The reaper requeues chunks whose worker vanished and fails jobs that cannot finish."""

from __future__ import annotations

from typing import Any

from jobs.job_store import ChunkOutput
from jobs.keys import new_job_id
from jobs.reaper import reap_once, try_reap
from jobs.service import JobService
from model.readers import Chunk
from tests.support.clock import FakeClock

EMPTY = ChunkOutput("t", 0, False, False)


def staged_job(service: JobService, chunks: list[Chunk], seal: bool) -> str:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    if seal:
        service.seal(job_id, 600, len(chunks))
    return job_id


def test_a_lease_not_renewed_within_the_lease_time_is_requeued(
    service: JobService, chunks: list[Chunk], settings: Any, queued: list, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=True)
    old = clock() - settings.chunk_lease_seconds - 10
    service.store.start_chunk(job_id, 0, f"h|7|{old!r}", 3, ("v", "s"))
    service.store.start_chunk(job_id, 1, f"h|8|{clock()!r}", 3, ("v", "s"))
    queued.clear()
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert report.requeued == [(job_id, 0)] and queued == [(job_id, 0)]
    assert list(service.store.leases(job_id)) == [1]
    assert "without renewing its lease" in service.store.redis.hget(service.store.keys(job_id).reasons, 0).decode()


def test_a_renewed_lease_is_kept_however_old_and_a_foreign_renewal_is_refused(
    service: JobService, chunks: list[Chunk], settings: Any, queued: list, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=True)
    old = clock() - settings.chunk_lease_seconds - 10
    lease = f"h|7|{old!r}"
    service.store.start_chunk(job_id, 0, lease, 3, ("v", "s"))
    assert service.store.renew_lease(job_id, 0, f"{lease}|1")
    assert not service.store.renew_lease(job_id, 0, f"{lease}|2")  # not the holder: refused
    queued.clear()
    assert reap_once(service.store, service.blobs, settings, service.enqueue).requeued == []
    assert list(service.store.leases(job_id)) == [0] and queued == []


def test_an_upload_that_went_silent_is_failed(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=False)
    clock.advance(settings.upload_idle_seconds)
    assert reap_once(service.store, service.blobs, settings, service.enqueue).failed == {}
    clock.advance(0.001)
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert list(report.failed) == [job_id]
    job = service.get("acme", job_id)
    assert job["state"] == "failed" and job["reason"].startswith("upload interrupted")
    assert job["reason_code"] == "upload_incomplete" and job["upload"]["results_deleted"]
    assert service.blobs.job_ids() == []  # an upload that never ended keeps nothing
    assert job_id not in service.store.active_jobs()


def test_a_slow_upload_that_keeps_sending_is_not_failed(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=False)
    clock.advance(settings.upload_idle_seconds * 0.7)
    assert service.touch_upload(job_id)  # bytes of the next chunk still arriving
    clock.advance(settings.upload_idle_seconds * 0.7)
    assert reap_once(service.store, service.blobs, settings, service.enqueue).failed == {}
    service.seal(job_id, 600, len(chunks))
    assert not service.touch_upload(job_id), "a sealed upload has no heartbeat to refresh"


def test_reading_a_job_fails_a_dead_upload_without_any_worker(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=False)
    clock.advance(settings.upload_idle_seconds + 1)
    assert service.get("acme", job_id)["state"] == "failed"


def test_a_job_without_progress_is_failed(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=True)
    clock.advance(settings.stuck_job_seconds)
    assert reap_once(service.store, service.blobs, settings, service.enqueue).failed == {}
    clock.advance(0.001)
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert report.failed[job_id].startswith("job stuck")


def test_a_job_waiting_behind_a_backlog_is_not_stuck(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    waiting = staged_job(service, chunks, seal=True)
    busy = staged_job(service, chunks, seal=True)
    clock.advance(settings.stuck_job_seconds + 1)
    service.store.commit_chunk(busy, 0, EMPTY, 0, 0, 0, seconds=0.5)  # the cluster is still making progress
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert report.failed == {} and service.get("acme", waiting)["state"] == "queued"
    clock.advance(settings.stuck_job_seconds + 1)
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert set(report.failed) == {waiting, busy}


def test_one_pass_per_interval_across_processes(service: JobService, settings: Any) -> None:
    assert try_reap(service.store, service.blobs, settings, service.enqueue) is not None
    assert try_reap(service.store, service.blobs, settings, service.enqueue) is None


def test_chunks_idle_past_the_visibility_timeout_are_requeued_once(
    service: JobService, chunks: list[Chunk], settings: Any, queued: list, clock: FakeClock
) -> None:
    job_id = staged_job(service, chunks, seal=True)
    service.store.commit_chunk(job_id, 0, EMPTY, 0, 0, 0, seconds=None)
    service.store.start_chunk(job_id, 1, f"h|1|{clock()!r}", 3, ("v", "s"))
    queued.clear()
    assert reap_once(service.store, service.blobs, settings, service.enqueue).requeued == []
    idle = clock() - settings.visibility_timeout - 1
    service.store.redis.hset(service.store.keys(job_id).job, "last_activity", repr(idle))
    assert reap_once(service.store, service.blobs, settings, service.enqueue).requeued == [(job_id, 2)]
    assert queued == [(job_id, 2)]
    assert reap_once(service.store, service.blobs, settings, service.enqueue).requeued == []


def test_the_files_of_expired_jobs_are_deleted_even_when_redis_forgot_the_job(
    service: JobService, chunks: list[Chunk], settings: Any, clock: FakeClock
) -> None:
    live = staged_job(service, chunks, seal=True)
    expired = new_job_id(int(clock()) - 1)  # its Redis keys are long gone: only its directory is left
    service.blobs.write(service.blobs.staged_path(expired, 0, "csv"), b"a,b\n1,2\n")
    service.blobs.write(service.blobs.output_path(expired, 0, "t", "res"), b"x")
    report = reap_once(service.store, service.blobs, settings, service.enqueue)
    assert report.expired_deleted == [expired]
    assert service.blobs.job_ids() == [live]
    assert len(service.blobs.staged_files(live)) == len(chunks)
