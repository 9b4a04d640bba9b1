"""JobService as the API sees it: the job object, tenancy, 404 vs 410, listing, cancel, backpressure."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest

from jobs.errors import JobExpired, JobNotFound
from jobs.keys import new_job_id
from jobs.processing import ChunkProcessor
from jobs.service import CLOCK_SKEW_SECONDS, JobService
from model.readers import Chunk
from tests.support.clock import FakeClock

JOB_FIELDS = {"id", "state", "outcome", "reason", "reason_code", "upload", "format", "passthrough", "upload_complete",
              "created_at",
              "started_at", "finished_at", "expires_at", "rows_total", "rows_done", "rows_failed", "chunks_total",
              "chunks_done", "progress", "rows_per_second", "eta_seconds", "model", "request_id", "webhook",
              "bytes_total", "bytes_done", "purged_at"}


def test_a_new_job_is_queued_with_every_field(service: JobService) -> None:
    job = service.create("acme", fmt="ndjson", passthrough="id", model={"version": "v", "sha256": "s"})
    assert set(job) == JOB_FIELDS
    assert (job["state"], job["format"], job["passthrough"], job["rows_total"], job["progress"]) == (
        "queued", "ndjson", "id", 0, 0.0)
    assert job["model"] == {"version": "v", "sha256": "s"}
    assert job["created_at"].endswith("Z") and job["expires_at"] > job["created_at"]


def test_progress_rate_and_eta_follow_the_commits(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list, clock: FakeClock
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    assert service.get("acme", job_id)["upload_complete"] is False
    service.seal(job_id, 600, 3)
    processor.process(*queued[0])
    clock.advance(2)  # the job has been running for two seconds, one chunk of three done
    job = service.get("acme", job_id)
    assert (job["state"], job["rows_done"], job["chunks_done"]) == ("running", 200, 1)
    # Progress counts staged bytes: chunks of equal rows weigh about the same.
    assert job["progress"] == pytest.approx(1 / 3, abs=0.01)
    assert job["bytes_done"] * 3 == pytest.approx(job["bytes_total"], rel=0.03)
    assert job["rows_per_second"] == 100.0
    assert job["eta_seconds"] == pytest.approx(4, rel=0.05)
    assert job["model"]["sha256"] == processor.scorer.sha256
    for item in queued[1:]:
        processor.process(*item)
    job = service.get("acme", job_id)
    assert (job["state"], job["progress"], job["eta_seconds"]) == ("succeeded", 1.0, 0.0)
    assert job["finished_at"] > job["started_at"]


def test_another_tenants_job_is_not_found(service: JobService) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for call in (service.get, service.cancel):
        with pytest.raises(JobNotFound):
            call("globex", job_id)
    with pytest.raises(JobNotFound):
        list(service.iter_result_tables("globex", job_id))
    assert service.list("globex") == ([], None)


@pytest.mark.parametrize("job_id", ["nope", "", new_job_id(int(time.time()) + 3600)])
def test_unknown_ids_are_not_found(service: JobService, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        service.get("acme", job_id)


def test_an_expired_id_is_gone_with_nothing_stored(service: JobService, client: fakeredis.FakeRedis) -> None:
    with pytest.raises(JobExpired) as caught:
        service.get("acme", new_job_id(int(time.time()) - 1))
    assert "expired" in str(caught.value)
    assert client.keys("*") == []


def test_a_job_past_its_ttl_answers_expired(service: JobService, settings: Any, clock: FakeClock) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    clock.advance(settings.job_ttl_seconds - 1)
    assert service.get("acme", job_id)["id"] == job_id  # still readable
    clock.advance(1)  # expired by the service's clock even while Redis still holds the job's keys
    with pytest.raises(JobExpired):
        service.get("acme", job_id)


def test_a_job_whose_keys_redis_already_dropped_answers_expired_within_the_skew(
    service: JobService, settings: Any, clock: FakeClock, client: fakeredis.FakeRedis
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    client.flushall()  # what Redis does at the job's expiry by its own clock, here a little ahead of ours
    clock.advance(settings.job_ttl_seconds - CLOCK_SKEW_SECONDS)
    with pytest.raises(JobExpired):
        service.get("acme", job_id)
    clock.advance(-1)
    with pytest.raises(JobNotFound):
        service.get("acme", job_id)


def test_list_is_newest_first_and_paged(service: JobService, clock: FakeClock) -> None:
    created = []
    for _ in range(7):
        created.append(service.create("acme", fmt="csv")["id"])
        clock.advance(0.001)
    service.create("globex", fmt="csv")
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = service.list("acme", limit=3, cursor=cursor)
        seen += [item["id"] for item in items]
        pages += 1
        if cursor is None:
            break
    assert seen == created[::-1]
    assert pages == 3


def test_cancel_skips_chunks_not_started_and_keeps_scored_ones(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    processor.process(*queued[0])
    job = service.cancel("acme", job_id)
    assert (job["state"], job["reason"]) == ("cancelled", "cancelled by the client")
    assert [processor.process(*item) for item in queued[1:]] == ["closed", "closed"]
    assert not service.stage_chunk(job_id, 3, chunks[0].table, [])
    rows = [t.num_rows for t in service.iter_result_tables("acme", job_id)]
    assert rows == [200]
    assert service.cancel("acme", job_id)["state"] == "cancelled"


def test_queued_rows_counts_staged_rows_not_yet_scored(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    assert service.queued_rows() == 600
    processor.process(*queued[0])
    assert service.queued_rows() == 400
    service.abort_upload(job_id, "upload_incomplete", "client went away", bytes_received=10, bytes_expected=20)
    assert service.queued_rows() == 0
    job = service.get("acme", job_id)
    assert (job["state"], job["reason_code"], job["reason"]) == ("failed", "upload_incomplete", "client went away")
    assert job["upload"] == {"complete": False, "bytes_received": 10, "bytes_expected": 20, "sha256": None,
                             "results_deleted": True}
    # What was scored of the partial upload is gone with it: no result of part of a body is ever shown.
    assert [t.num_rows for t in service.iter_result_tables("acme", job_id)] == []


def test_a_sealed_job_shows_the_size_and_digest_of_its_body(service: JobService, chunks: list[Chunk]) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    job = service.seal(job_id, sum(c.rows for c in chunks), len(chunks), bytes_received=123, sha256="ab" * 32)
    assert job["upload"] == {"complete": True, "bytes_received": 123, "bytes_expected": None, "sha256": "ab" * 32,
                             "results_deleted": False}


def test_a_chunk_without_records_is_refused(service: JobService, chunks: list[Chunk]) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    with pytest.raises(ValueError, match="holds no record"):
        service.stage_chunk(job_id, 0, chunks[0].table.slice(0, 0), [])
