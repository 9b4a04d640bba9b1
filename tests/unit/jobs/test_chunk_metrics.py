"""Cluster-wide chunk metrics: counted once by the commit script, latency buckets, jobs by state, queue depth."""

from __future__ import annotations

import math

import fakeredis
import pytest

from jobs.chunk_metrics import CHUNK_SECONDS_BUCKETS, bucket_field
from jobs.job_store import ChunkOutput, JobStore
from jobs.keys import broker_queue_lists, live_index, metrics_key
from jobs.processing import ChunkProcessor
from jobs.service import JobService
from model.readers import Chunk
from tests.support.clock import FakeClock


def new_staged_job(store: JobStore, chunks: int = 2, rows: int = 10) -> str:
    job_id, _, _ = store.create("acme", {"fmt": "csv", "passthrough": ""}, 3600)
    for index in range(chunks):
        store.stage(job_id, index, "arrow", 100, rows)
    return job_id


def out(records: int = 10, token: str = "t") -> ChunkOutput:
    return ChunkOutput(token, records, True, True)


def buckets(service: JobService) -> dict[str, int]:
    return dict(service.metrics()["seconds_buckets"])


@pytest.mark.parametrize(
    ("seconds", "le"),
    [(0.0, "0.05"), (0.05, "0.05"), (0.0501, "0.1"), (1.0, "1.0"), (2.6, "5.0"), (60.0, "60.0"), (61.0, "+Inf")],
)
def test_an_observation_falls_in_the_smallest_bucket_that_holds_it(seconds: float, le: str) -> None:
    assert bucket_field(seconds) == f"chunk_seconds_bucket:{le}"


def test_a_duplicate_commit_is_counted_once(service: JobService) -> None:
    store = service.store
    job_id = new_staged_job(store)
    assert store.commit_chunk(job_id, 0, out(), 7, 3, 100, seconds=0.3) == "committed"
    assert store.commit_chunk(job_id, 0, out(token="late"), 7, 3, 100, seconds=0.3) == "ignored"
    assert store.commit_chunk(job_id, 1, out(), 0, 10, 100, seconds=None) == "committed"
    assert store.commit_chunk(job_id, 1, out(token="late"), 0, 10, 100, seconds=None) == "ignored"
    m = service.metrics()
    assert (m["rows_scored"], m["rows_failed"], m["chunks_scored"], m["chunks_failed"]) == (7, 13, 1, 1)
    assert (m["seconds_count"], m["seconds_sum"]) == (1, pytest.approx(0.3))
    assert m["commits_refused"] == {"duplicate": 2, "closed": 0}


def test_a_commit_to_a_closed_or_missing_job_counts_no_row_only_the_refusal(service: JobService) -> None:
    store = service.store
    assert store.commit_chunk("zzzz-00000000000000000000", 0, out(), 10, 0, 100, seconds=0.2) == "gone"
    assert store.redis.exists(metrics_key(store.prefix)) == 0
    job_id = new_staged_job(store)
    store.close(job_id, "cancelled", "cancelled", "by the client")
    assert store.commit_chunk(job_id, 0, out(), 10, 0, 100, seconds=0.2) == "cancelled"
    m = service.metrics()
    assert (m["rows_scored"], m["rows_failed"], m["chunks_scored"], m["chunks_failed"]) == (0, 0, 0, 0)
    assert m["commits_refused"] == {"duplicate": 0, "closed": 1}
    assert service.metrics()["rows_scored"] == 0


def test_latency_buckets_are_cumulative_and_end_with_inf(service: JobService) -> None:
    store = service.store
    observations = [0.01, 0.07, 0.07, 3.0, 120.0]
    job_id = new_staged_job(store, chunks=len(observations))
    for index, seconds in enumerate(observations):
        store.commit_chunk(job_id, index, out(), 10, 0, 100, seconds=seconds)
    got = buckets(service)
    assert list(got) == [*(repr(b) for b in CHUNK_SECONDS_BUCKETS), "+Inf"]
    assert (got["0.05"], got["0.1"], got["2.5"], got["5.0"], got["60.0"], got["+Inf"]) == (1, 3, 3, 4, 4, 5)
    m = service.metrics()
    assert m["seconds_count"] == got["+Inf"] == 5
    assert math.isclose(m["seconds_sum"], sum(observations))


def test_processed_chunks_add_their_rows_and_one_latency_each(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    service.seal(job_id, sum(c.rows for c in chunks), len(chunks))
    for job, index in [*queued, *queued]:  # every message delivered twice
        processor.process(job, index)
    job = service.get("acme", job_id)
    m = service.metrics()
    assert (m["rows_scored"] + m["rows_failed"], m["rows_failed"]) == (job["rows_done"], job["rows_failed"])
    assert m["rows_scored"] + m["rows_failed"] == 600
    assert (m["chunks_scored"], m["chunks_failed"], m["seconds_count"]) == (3, 0, 3)
    assert m["seconds_sum"] > 0


def test_a_chunk_failed_after_its_attempts_counts_as_failed_without_latency(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], settings
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    service.stage_chunk(job_id, 0, chunks[0].table, chunks[0].errors)
    for attempt in range(settings.max_chunk_attempts):
        service.store.start_chunk(job_id, 0, f"h|{attempt}|0.0", settings.max_chunk_attempts, ("v", "s"))
    assert processor.process(job_id, 0) == "committed"
    m = service.metrics()
    assert (m["rows_scored"], m["rows_failed"], m["chunks_scored"], m["chunks_failed"]) == (0, 200, 0, 1)
    assert m["seconds_count"] == 0


def test_state_counts_cover_every_live_job_and_forget_expired_ones(
    service: JobService, client: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    store = service.store
    running = new_staged_job(store)
    store.start_chunk(running, 0, "h|1|0.0", 3, ("v", "s"))
    cancelled = new_staged_job(store)
    store.close(cancelled, "cancelled", "cancelled", "by the client")
    new_staged_job(store)
    expired = new_staged_job(store)
    # An expired job's hash is gone; its entry in the live index is dropped at the next count.
    client.delete(store.keys(expired).job)
    client.zadd(live_index(store.prefix), {expired: int(clock()) - 1})
    assert service.state_counts() == {"queued": 1, "running": 1, "cancelled": 1}
    assert client.zscore(live_index(store.prefix), expired) is None


def test_queue_depth_counts_every_priority_list_of_the_queue(
    service: JobService, client: fakeredis.FakeRedis
) -> None:
    names = broker_queue_lists(service.settings.queue_name)
    assert names[0] == service.settings.queue_name and len(names) == 4
    client.rpush(names[0], "a", "b")
    client.rpush(names[2], "c")
    client.rpush("some-other-queue", "d")
    assert service.queue_depth() == 3
