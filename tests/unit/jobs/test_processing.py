"""The worker's chunk logic in-process: results equal direct scoring, failures become bounded row errors."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest
import redis

from jobs.processing import ChunkProcessor, LeaseHeartbeat
from jobs.service import JobService
from model.errors import RowError
from model.ranges import split_records
from model.readers import Chunk
from model.schema import REQUIRED_COLUMNS
from model.scoring import Scorer
from tests.support.clock import FakeClock


def submit(service: JobService, chunks: list[Chunk], seal: bool = True) -> str:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        assert service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    if seal:
        service.seal(job_id, sum(c.rows for c in chunks), len(chunks))
    return job_id


def submit_ranges(service: JobService, path: Any, target_bytes: int, fmt: str = "csv") -> str:
    """Stage a file the way the API does for CSV and NDJSON: record ranges the worker parses."""
    with path.open("rb") as stream:
        body = split_records(stream, fmt, target_bytes=target_bytes, columns=list(REQUIRED_COLUMNS))
        job_id = service.create("acme", fmt=fmt, header=body.header)["id"]
        count = sum(service.stage_range(job_id, index, data, fmt) for index, data in enumerate(body.ranges))
    service.seal(job_id, None, count)
    return job_id


def results(service: JobService, job_id: str) -> pa.Table:
    return pa.concat_tables(service.iter_result_tables("acme", job_id))


def test_results_equal_direct_scoring_in_input_order(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], scorer: Scorer, queued: list
) -> None:
    job_id = submit(service, chunks)
    for job, index in reversed(queued):  # commit order must not matter
        processor.process(job, index)
    job = service.get("acme", job_id)
    assert (job["state"], job["outcome"], job["rows_done"], job["rows_failed"]) == ("succeeded", "all_rows_scored",
                                                                                  600, 0)
    expected = scorer.score_frame(pa.concat_tables([c.table for c in chunks])).to_arrow()
    got = results(service, job_id)
    assert got.column_names == sorted(expected.column_names)
    assert got.select(expected.column_names).equals(expected)
    assert got["row"].to_pylist() == list(range(600))


def test_a_redelivered_chunk_is_not_counted_twice(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list
) -> None:
    job_id = submit(service, chunks)
    for job, index in [*queued, *queued]:
        processor.process(job, index)
    assert processor.process(job_id, 0) == "closed"
    job = service.get("acme", job_id)
    assert (job["rows_done"], job["chunks_done"]) == (600, 3)
    assert results(service, job_id).num_rows == 600


def test_scoring_errors_and_parse_errors_are_row_errors(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk]
) -> None:
    table = chunks[0].table
    bad = table.set_column(table.column_names.index("x5"), "x5", pa.array(["not a number"] * table.num_rows))
    job_id = service.create("acme", fmt="csv")["id"]
    service.stage_chunk(job_id, 0, bad.slice(0, 3), [RowError(3, None, "unreadable record")])
    service.seal(job_id, 4, 1)
    processor.process(job_id, 0)
    job = service.get("acme", job_id)
    errors = pa.concat_tables(service.iter_error_tables("acme", job_id)).to_pylist()
    assert [e["row"] for e in errors] == [0, 1, 2, 3]
    assert errors[3] == {"row": 3, "column": None, "message": "unreadable record"}
    assert all(e["column"] == "x5" for e in errors[:3])
    assert (job["state"], job["outcome"], job["rows_failed"], job["rows_done"]) == ("succeeded", "some_rows_failed",
                                                                                   4, 4)


class Exploding:
    """A scorer that fails every time, as a chunk that cannot be scored would."""

    def __init__(self, scorer: Scorer) -> None:
        self.version, self.sha256 = scorer.version, scorer.sha256

    def score_frame(self, frame: Any) -> Any:
        raise MemoryError("chunk too big")


def test_a_failing_chunk_is_retried_then_committed_as_row_errors(
    service: JobService, scorer: Scorer, chunks: list[Chunk], queued: list, settings: Any
) -> None:
    processor = ChunkProcessor(service.store, service.blobs, Exploding(scorer), settings.max_chunk_attempts,
                               service.enqueue)
    job_id = service.create("acme", fmt="csv")["id"]
    service.stage_chunk(job_id, 0, chunks[0].table.slice(1), [RowError(0, None, "unreadable record")])
    service.seal(job_id, 200, 1)
    assert processor.process(job_id, 0) == "retrying"
    assert queued == [(job_id, 0), (job_id, 0)]
    assert processor.process(job_id, 0) == "finished"
    errors = pa.concat_tables(service.iter_error_tables("acme", job_id)).to_pylist()
    assert [e["row"] for e in errors] == list(range(200))
    assert errors[0]["message"] == "unreadable record"
    assert errors[1]["message"] == "chunk failed after 2 attempts: MemoryError: chunk too big"
    job = service.get("acme", job_id)
    assert (job["state"], job["rows_failed"], job["rows_done"]) == ("succeeded", 200, 200)
    assert list(service.iter_result_tables("acme", job_id)) == []


def test_a_chunk_whose_workers_keep_dying_fails_after_the_bound(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], settings: Any
) -> None:
    job_id = submit(service, chunks[:1])
    for attempt in range(settings.max_chunk_attempts):
        # A worker that takes the lease and dies leaves the lease behind.
        assert service.store.start_chunk(job_id, 0, f"h|{attempt}|0.0", 2, ("v", "s")).action == "run"
    assert processor.process(job_id, 0) == "finished"
    messages = {e["message"] for e in pa.concat_tables(service.iter_error_tables("acme", job_id)).to_pylist()}
    assert messages == {"chunk failed after 2 attempts: worker process 1 on h was lost during attempt 2"}


def test_a_lost_staged_input_fails_the_chunk_with_that_reason(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk]
) -> None:
    job_id = submit(service, chunks[:1])
    service.blobs.delete_many(service.blobs.staged_files(job_id))
    assert processor.process(job_id, 0) == "finished"
    job = service.get("acme", job_id)
    assert (job["rows_failed"], job["outcome"]) == (200, "some_rows_failed")


def test_a_lost_range_fails_the_job_because_its_rows_cannot_be_counted(
    service: JobService, processor: ChunkProcessor, synth_csv: Any
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    service.blobs.delete(service.blobs.staged_path(job_id, 1, "csv"))
    for index in range(3):
        processor.process(job_id, index)
    job = service.get("acme", job_id)
    assert job["state"] == "failed" and "staged input was lost" in job["reason"]
    assert service.blobs.staged_files(job_id) == []


@pytest.mark.parametrize("passthrough", ["x0", None])
def test_the_passthrough_column_follows_its_row(
    service: JobService, processor: ChunkProcessor, synth_csv: Any, scorer: Scorer, passthrough: str | None
) -> None:
    from model.readers import iter_chunks

    with synth_csv.open("rb") as stream:
        chunk = next(iter_chunks(stream, "csv", columns=scorer.required_columns, chunk_rows=50,
                                 passthrough=passthrough))
    job_id = service.create("acme", fmt="csv", passthrough=passthrough)["id"]
    service.stage_chunk(job_id, 0, chunk.table, [])
    service.seal(job_id, 50, 1)
    processor.process(job_id, 0)
    got = results(service, job_id)
    assert got.column_names == sorted(got.column_names)
    if passthrough:
        assert got[passthrough].equals(chunk.table[passthrough])
    else:
        assert "x0" not in got.column_names


def test_a_worker_with_another_model_does_not_score_the_job(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list
) -> None:
    job_id = service.create("acme", fmt="csv", model={"version": "older", "sha256": "0" * 64})["id"]
    service.stage_chunk(job_id, 0, chunks[0].table, [])
    service.seal(job_id, 200, 1)
    assert processor.process(job_id, 0) == "retrying"
    assert processor.process(job_id, 0) == "finished"
    messages = {e["message"] for e in pa.concat_tables(service.iter_error_tables("acme", job_id)).to_pylist()}
    assert len(messages) == 1 and "ModelMismatch: this worker serves model" in messages.pop()
    assert service.get("acme", job_id)["model"]["version"] == "older"


def test_ranges_parsed_by_the_worker_give_global_rows_equal_to_direct_scoring(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], scorer: Scorer, synth_csv: Any, queued: list
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    assert len(queued) >= 5
    assert service.get("acme", job_id)["rows_total"] == 0  # not counted until a worker parses them
    for job, index in reversed(queued):  # commit order must not matter
        processor.process(job, index)
    job = service.get("acme", job_id)
    assert (job["state"], job["rows_total"], job["rows_done"], job["progress"]) == ("succeeded", 600, 600, 1.0)
    expected = scorer.score_frame(pa.concat_tables([c.table for c in chunks])).to_arrow()
    got = results(service, job_id)
    assert got["row"].to_pylist() == list(range(600))
    assert got.select(expected.column_names).equals(expected)
    assert service.blobs.staged_files(job_id) == []  # each staged input went when its chunk committed


def test_only_committed_chunks_before_the_first_missing_one_are_read(
    service: JobService, processor: ChunkProcessor, synth_csv: Any, queued: list
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    processor.process(job_id, 0)
    processor.process(job_id, 2)  # its place in the body is known only once chunk 1 has counted its records
    first = service.store.outputs(job_id)[0].records
    assert results(service, job_id)["row"].to_pylist() == list(range(first))
    processor.process(job_id, 1)
    assert results(service, job_id).num_rows == sum(o.records for o in service.store.outputs(job_id).values())


def test_a_late_attempt_never_replaces_the_committed_files(
    service: JobService, processor: ChunkProcessor, synth_csv: Any
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    fields = service.store.fields(job_id) or {}
    late = processor._read(job_id, 0, fields)  # a slow attempt read the input before the first one committed
    assert processor.process(job_id, 0) == "committed"
    committed = service.store.outputs(job_id)[0]
    scored = processor.scorer.score_frame(late.table).to_arrow()
    no_errors = pa.table({"row": pa.array([], pa.int64())})
    assert processor._commit(job_id, 0, late, scored, no_errors, 0.1) == "ignored"
    assert service.store.outputs(job_id) == {0: committed}
    names = [path.rsplit("/", 1)[1] for path in service.blobs.output_files(job_id)]
    assert names == [f"0.{committed.token}.res.arrow"]


def test_an_unreadable_range_fails_the_job_as_the_api_would_have(
    service: JobService, processor: ChunkProcessor
) -> None:
    header = ",".join(REQUIRED_COLUMNS).encode()
    job_id = service.create("acme", fmt="csv", header=header)["id"]
    service.stage_range(job_id, 0, b"\xff\xfe not utf-8\n", "csv")
    service.seal(job_id, None, 1)
    assert processor.process(job_id, 0) == "failed"
    job = service.get("acme", job_id)
    assert job["state"] == "failed" and job["reason"].startswith("not_utf8: ")
    assert service.blobs.staged_files(job_id) == []


def test_a_worker_that_finds_the_store_full_fails_the_job_and_deletes_its_data(
    service: JobService, processor: ChunkProcessor, synth_csv: Any
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    processor.process(job_id, 0)
    service.blobs.reserve_bytes = 1 << 20
    service.blobs.free_bytes = lambda: 1 << 20  # no room left above the reserve for the next result
    assert processor.process(job_id, 1) == "failed"
    job = service.get("acme", job_id)
    assert job["state"] == "failed" and job["reason"].startswith("insufficient_storage: the blob store has")
    assert service.blobs.job_ids() == []


def test_an_attempt_that_ends_after_its_upload_was_purged_leaves_nothing(
    service: JobService, processor: ChunkProcessor, synth_csv: Any
) -> None:
    job_id = submit_ranges(service, synth_csv, 20_000)
    late = processor._read(job_id, 0, service.store.fields(job_id) or {})  # read before the upload was cut
    service.abort_upload(job_id, "upload_incomplete", "cut")
    assert service.blobs.job_ids() == []
    scored = processor.scorer.score_frame(late.table).to_arrow()
    assert processor._commit(job_id, 0, late, scored, pa.table({"row": pa.array([], pa.int64())}), 0.1) == "failed"
    assert service.blobs.job_ids() == []  # its result file, and the folders writing it made, are gone


def test_a_commit_whose_reply_was_lost_is_tried_again_and_counted_once(
    service: JobService, chunks: list[Chunk], scorer: Scorer, queued: list, clock: FakeClock
) -> None:
    """The commit ran but its reply never came back (a timeout): the retry is recognised as the same attempt, so
    the rows count once and the attempt keeps the files its commit references."""
    store = service.store
    real_commit = store.commit_chunk
    lost: list[str] = []

    def commit_reply_lost_once(*args: Any, **kwargs: Any) -> str:
        answer = real_commit(*args, **kwargs)
        if not lost:
            lost.append(answer)
            raise redis.TimeoutError("Timeout reading from socket")
        return answer

    store.commit_chunk = commit_reply_lost_once  # type: ignore[method-assign]
    processor = ChunkProcessor(store, service.blobs, scorer, 2, service.enqueue, commit_patience=10,
                               pause=clock.advance)
    job_id = submit(service, chunks)
    assert [processor.process(job, index) for job, index in queued] == ["committed", "committed", "finished"]
    assert lost == ["committed"]
    job = service.get("acme", job_id)
    assert (job["state"], job["rows_done"], job["chunks_done"]) == ("succeeded", 600, 3)
    assert results(service, job_id)["row"].to_pylist() == list(range(600))
    assert store.chunk_metrics().commits_refused == {"duplicate": 0, "closed": 0}


def test_a_commit_that_never_reaches_redis_gives_up_after_its_patience(
    service: JobService, chunks: list[Chunk], scorer: Scorer, queued: list, clock: FakeClock
) -> None:
    store = service.store

    def unreachable(*args: Any, **kwargs: Any) -> str:
        raise redis.ConnectionError("Timeout connecting to server")

    store.commit_chunk = unreachable  # type: ignore[method-assign]
    started = clock()
    processor = ChunkProcessor(store, service.blobs, scorer, 2, service.enqueue, commit_patience=5,
                               pause=clock.advance)
    submit(service, chunks)
    job, index = queued[0]
    with pytest.raises(redis.ConnectionError):
        processor.process(job, index)
    assert 4 <= clock() - started <= 5


def test_the_lease_heartbeat_renews_until_the_lease_is_lost_and_rides_out_redis_errors() -> None:
    answers = iter([True, redis.TimeoutError("Timeout reading from socket"), True, False])
    calls: list[int] = []
    done = threading.Event()

    def renew() -> bool:
        calls.append(1)
        answer = next(answers)
        if answer is False:
            done.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    with LeaseHeartbeat(renew, 0.001):
        assert done.wait(timeout=10)
    assert len(calls) == 4  # stopped at the first refusal: the lease is another attempt's now
