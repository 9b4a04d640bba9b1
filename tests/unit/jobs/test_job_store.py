"""The Lua-backed job store: exactly-once commits, counters, the state machine, attempts, TTLs."""

from __future__ import annotations

import fakeredis
import pytest

from jobs.job_store import ChunkOutput, JobStore, StagedChunk
from jobs.keys import metrics_key
from tests.support.clock import FakeClock

MODEL = ("v1", "abc")


def new_job(store: JobStore, ttl: int = 3600) -> str:
    job_id, _, _ = store.create("acme", {"fmt": "csv", "passthrough": ""}, ttl)
    return job_id


def stage(store: JobStore, job_id: str, index: int, rows: int = 10) -> str:
    return store.stage(job_id, index, "arrow", 100 + index, rows)


def output(index: int, records: int = 10, token: str = "t") -> ChunkOutput:
    return ChunkOutput(f"{token}{index}", records, True, False)


def commit(store: JobStore, job_id: str, index: int, scored: int = 10, failed: int = 0,
           seconds: float | None = 0.2) -> str:
    return store.commit_chunk(job_id, index, output(index, scored + failed), scored, failed, 100 + index,
                              seconds=seconds)


def test_new_job_is_queued_and_unsealed(store: JobStore) -> None:
    fields = store.fields(new_job(store))
    assert fields is not None
    assert (fields["state"], fields["sealed"], fields["tenant"]) == ("queued", "0", "acme")


def test_commit_is_exactly_once(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    assert commit(store, job_id, 0, scored=7, failed=3) == "committed"
    assert store.commit_chunk(job_id, 0, output(0, token="late"), 10, 0, 100, seconds=0.1) == "ignored"
    fields = store.fields(job_id) or {}
    assert (fields["rows_scored"], fields["rows_failed"], fields["chunks_done"]) == ("7", "3", "1")
    assert (fields["rows_read"], fields["bytes_done"]) == ("10", "100")
    assert store.outputs(job_id) == {0: output(0)}  # the first attempt's files, never the late one's


def test_a_commit_repeated_by_its_attempt_changes_nothing_and_a_late_one_is_counted_as_refused(
    store: JobStore,
) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    store.seal(job_id, 10, 1)
    assert commit(store, job_id, 0) == "finished"
    # The same attempt again (its first reply was lost): answered as committed, even though the job is closed now.
    assert commit(store, job_id, 0) == "committed"
    assert store.commit_chunk(job_id, 0, output(0, token="late"), 10, 0, 100, seconds=0.1) == "succeeded"
    fields = store.fields(job_id) or {}
    assert (fields["rows_scored"], fields["chunks_done"], fields["state"]) == ("10", "1", "succeeded")
    assert store.outputs(job_id) == {0: output(0)}
    metrics = store.chunk_metrics()
    assert (metrics.rows_scored, metrics.chunks_scored) == (10, 1)
    assert metrics.commits_refused == {"duplicate": 0, "closed": 1}
    other = new_job(store)
    stage(store, other, 0)
    assert commit(store, other, 0) == "committed"
    assert store.commit_chunk(other, 0, output(0, token="late"), 10, 0, 100, seconds=0.1) == "ignored"
    assert store.chunk_metrics().commits_refused == {"duplicate": 1, "closed": 1}


def test_commit_drops_the_lease(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    assert store.start_chunk(job_id, 0, "host|1|0.0", 3, MODEL).action == "run"
    commit(store, job_id, 0)
    assert store.leases(job_id) == {}


def test_job_succeeds_when_the_last_chunk_commits_after_the_seal(store: JobStore) -> None:
    job_id = new_job(store)
    for index in range(3):
        stage(store, job_id, index)
    assert store.seal(job_id, 30, 3) == "queued"
    assert commit(store, job_id, 2) == "committed"
    assert commit(store, job_id, 0, scored=9, failed=1) == "committed"
    assert commit(store, job_id, 1) == "finished"
    fields = store.fields(job_id) or {}
    assert (fields["state"], fields["outcome"]) == ("succeeded", "some_rows_failed")
    assert fields["finished_at"]
    assert job_id not in store.active_jobs()


def test_seal_succeeds_at_once_when_every_chunk_already_committed(store: JobStore) -> None:
    job_id = new_job(store)
    for index in range(2):
        stage(store, job_id, index)
        commit(store, job_id, index)
    assert (store.fields(job_id) or {})["state"] == "running"
    assert store.seal(job_id, 20, 2) == "succeeded"
    assert (store.fields(job_id) or {})["outcome"] == "all_rows_scored"
    assert store.seal(job_id, 99, 9) == "succeeded"
    assert (store.fields(job_id) or {})["rows_total"] == "20"


def test_staging_the_same_index_twice_counts_it_once(store: JobStore) -> None:
    job_id = new_job(store)
    assert stage(store, job_id, 0) == "staged"
    assert stage(store, job_id, 0) == "duplicate"
    fields = store.fields(job_id) or {}
    assert (fields["rows_staged"], fields["chunks_staged"], fields["bytes_staged"]) == ("10", "1", "100")
    assert store.chunk(job_id, 0) == StagedChunk("arrow", 100, 10)


def test_a_range_is_staged_without_a_record_count(store: JobStore) -> None:
    job_id = new_job(store)
    assert store.stage(job_id, 0, "csv", 4096, None) == "staged"
    fields = store.fields(job_id) or {}
    assert ("rows_staged" not in fields, fields["bytes_staged"]) == (True, "4096")
    assert store.chunk(job_id, 0) == StagedChunk("csv", 4096, None)
    assert store.seal(job_id, None, 1) == "queued"  # the records are counted by the worker that parses it


def test_nothing_is_staged_after_the_seal(store: JobStore) -> None:
    job_id = new_job(store)
    store.seal(job_id, 0, 0)
    assert stage(store, job_id, 0) == "succeeded"


def test_first_start_moves_the_job_to_running_and_records_the_model(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    decision = store.start_chunk(job_id, 0, "host|42|1.5", 3, MODEL)
    assert (decision.action, decision.attempt) == ("run", 1)
    fields = store.fields(job_id) or {}
    assert (fields["state"], fields["model_version"], fields["model_sha256"]) == ("running", "v1", "abc")
    lease = store.leases(job_id)[0]
    assert (lease.hostname, lease.pid, lease.started_at, lease.attempt) == ("host", 42, 1.5, 1)


def test_attempts_are_bounded_and_a_lost_attempt_is_named(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    assert store.start_chunk(job_id, 0, "h|1|0.0", 2, MODEL).attempt == 1
    assert store.start_chunk(job_id, 0, "h|2|0.0", 2, MODEL).attempt == 2  # the first lease was never released
    decision = store.start_chunk(job_id, 0, "h|3|0.0", 2, MODEL)
    assert (decision.action, decision.attempt) == ("exhausted", 2)
    assert decision.reason == "worker process 2 on h was lost during attempt 2"
    assert store.leases(job_id) == {}


def test_release_lease_only_releases_the_callers_lease(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    store.start_chunk(job_id, 0, "h|1|0.0", 3, MODEL)
    assert not store.release_lease(job_id, 0, "h|9|0.0|1", "not mine")
    assert store.release_lease(job_id, 0, "h|1|0.0|1", "ValueError: boom")
    assert not store.release_lease(job_id, 0, "h|1|0.0|1", "twice")
    decision = store.start_chunk(job_id, 0, "h|1|0.0", 1, MODEL)
    assert (decision.action, decision.reason) == ("exhausted", "ValueError: boom")


def test_started_or_committed_chunks_are_not_started_again(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    commit(store, job_id, 0)
    assert store.start_chunk(job_id, 0, "h|1|0.0", 3, MODEL).action == "committed"
    assert store.attempts(job_id) == {}


@pytest.mark.parametrize("state", ["cancelled", "failed"])
def test_a_closed_job_skips_its_chunks_and_discards_late_results(store: JobStore, state: str) -> None:
    job_id = new_job(store)
    for index in range(3):
        stage(store, job_id, index)
    commit(store, job_id, 0)
    store.start_chunk(job_id, 2, "h|1|0.0", 3, MODEL)  # in flight when the job closes
    assert store.close(job_id, state, "some_code", "why") == state
    assert store.start_chunk(job_id, 1, "h|1|0.0", 3, MODEL).action == "closed"
    assert commit(store, job_id, 2) == state
    assert store.leases(job_id) == {}
    fields = store.fields(job_id) or {}
    assert (fields["chunks_done"], fields["reason_code"], fields["reason"]) == ("1", "some_code", "why")
    assert store.outputs(job_id) == {0: output(0)}
    assert store.close(job_id, "failed", "other", "again") == state


def test_a_purging_close_forgets_what_was_scored_and_records_what_arrived(store: JobStore) -> None:
    job_id = new_job(store)
    for index in range(3):
        stage(store, job_id, index)
    commit(store, job_id, 0)
    record = {"bytes_received": 28_672, "bytes_expected": 85_000}
    assert store.close(job_id, "failed", "upload_incomplete", "cut", purge=True, record=record) == "failed"
    assert store.outputs(job_id) == {}
    assert list(store.committed(job_id)) == [0]  # the guard stays: a late duplicate commit is still refused
    assert commit(store, job_id, 1) == "failed"
    assert store.outputs(job_id) == {}
    fields = store.fields(job_id) or {}
    assert (fields["bytes_received"], fields["bytes_expected"]) == ("28672", "85000")
    assert fields["purged_at"]


def test_operations_on_a_missing_job_create_nothing(client: fakeredis.FakeRedis, store: JobStore) -> None:
    job_id = "zzzzzz-" + "0" * 20
    assert stage(store, job_id, 0) == "gone"
    assert store.start_chunk(job_id, 0, "h|1|0.0", 3, MODEL).action == "gone"
    assert commit(store, job_id, 0) == "gone"
    assert store.seal(job_id, 1, 1) == "gone"
    assert store.close(job_id, "cancelled", "cancelled", "x") == "gone"
    assert client.keys("*") == []


def test_every_key_expires_with_the_job(client: fakeredis.FakeRedis, store: JobStore, clock: FakeClock) -> None:
    job_id = new_job(store, ttl=1000)
    expires_at = int((store.fields(job_id) or {})["expires_at"])
    for index in range(3):
        stage(store, job_id, index)
    store.start_chunk(job_id, 0, "h|1|0.0", 3, MODEL)
    store.start_chunk(job_id, 1, "h|1|0.0", 3, MODEL)
    store.release_lease(job_id, 1, "h|1|0.0|1", "retry")
    assert store.renew_lease(job_id, 0, "h|1|0.0|1")
    commit(store, job_id, 0, failed=2)
    # The cluster-wide metrics hash holds counters over every job: it is the one key that never expires.
    metrics = metrics_key(store.prefix).encode()
    assert client.pexpiretime(metrics) == -1
    keys = [key for key in client.keys("*") if key != metrics]
    assert len(keys) >= 8
    for key in keys:
        deadline = client.pexpiretime(key) / 1000
        assert abs(deadline - expires_at) < 2, key  # release_lease copies the job's remaining TTL
    assert expires_at == int(clock()) + 1000


def test_a_seal_that_disagrees_with_the_staged_chunks_fails_the_job(store: JobStore) -> None:
    job_id = new_job(store)
    stage(store, job_id, 0)
    assert store.seal(job_id, 20, 2) == "failed"
    fields = store.fields(job_id) or {}
    assert fields["reason"] == "upload sealed with 2 chunks / 20 rows but 1 chunks / 10 rows were staged"
    assert job_id not in store.active_jobs()
