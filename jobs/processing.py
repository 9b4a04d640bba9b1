"""What a worker does with one chunk: count the attempt, parse and score its input, commit the outcome once."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from core.states import JobState, StartAction
from jobs.blob_store import BlobStore, InsufficientStorage
from jobs.job_store import ChunkOutput, JobStore, StagedChunk, StartDecision
from jobs.lifecycle import close_job, discard_late, fail_for_storage
from jobs.staging import ERROR_SCHEMA, StagingError, decode_staged, encode_table, errors_table
from jobs.summary import ChunkCounters, chunk_counters, error_counters
from model.ranges import parse_range
from model.readers import ReadError
from model.readers.parquet import RowGroups, open_file, read_chunk
from model.scoring import score_chunk

Enqueue = Callable[[str, int], None]

log = logging.getLogger(__name__)
# Pause between tries of a commit that could not reach Redis.
COMMIT_RETRY_PAUSE = 1.0


class ModelMismatch(RuntimeError):
    """The worker's model is not the one the job was created for."""


class InputLost(RuntimeError):
    """The chunk's staged input is not in the blob store (deleted, or never written)."""


@dataclass(frozen=True)
class ChunkInput:
    """A chunk's parsed input: readable rows (numbered from the chunk's first record), parse errors, records."""

    staged: StagedChunk
    table: pa.Table
    parse_errors: pa.Table
    records: int


def lease_text(now: float) -> str:
    """This process's lease prefix taken at `now`: "hostname|pid|started_at" (the store appends the attempt)."""
    return f"{socket.gethostname()}|{os.getpid()}|{now!r}"


def failed_chunk_errors(first_row: int, rows: int, parse_errors: pa.Table, message: str) -> pa.Table:
    """Row errors for a chunk that could not be scored: its parse errors, and `message` for every other row."""
    every_row = np.arange(first_row, first_row + rows, dtype=np.int64)
    others = every_row[~np.isin(every_row, parse_errors["row"].to_numpy())]
    failed = pa.table(
        {
            "row": pa.array(others, pa.int64()),
            "column": pa.nulls(len(others), pa.string()),
            "message": pa.array(np.full(len(others), message, dtype=object), pa.string()),
        },
        schema=ERROR_SCHEMA,
    )
    return pa.concat_tables([parse_errors, failed]).sort_by("row")


class LeaseHeartbeat:
    """Renews a chunk's lease on a thread every `interval` seconds while the attempt holding it runs.

    A renewal that cannot reach Redis is skipped (the next one may); once the lease is not ours any more
    (the reaper took it back), renewing stops.
    """

    def __init__(self, renew: Callable[[], bool], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="predictq-lease", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._renew():
                    log.warning("lease lost: another attempt may score this chunk; this one's commit will be refused"
                                " if it comes second")
                    return
            except redis.RedisError as exc:
                log.warning("lease renewal failed (%s); trying again in %.1fs", exc, self._interval)


def distinct_rows(errors: pa.Table) -> int:
    """Number of distinct rows with at least one error."""
    return int(pc.count_distinct(errors["row"]).as_py()) if errors.num_rows else 0


class ChunkProcessor:
    """Scores chunks of jobs in one worker process with the process's one scorer."""

    def __init__(self, store: JobStore, blobs: BlobStore, scorer: Any, max_attempts: int, enqueue: Enqueue, *,
                 lease_seconds: float = 30.0, commit_patience: float = 0.0,
                 pause: Callable[[float], None] = time.sleep) -> None:
        """`lease_seconds`: the chunk lease, renewed every third of it while an attempt runs. `commit_patience`:
        how long (by the store's clock) a commit that cannot reach Redis is tried again, `pause` seconds apart
        (safe: the commit script knows a repeat of the same attempt), so that an attempt cut off from Redis still
        commits, or is refused, once it heals."""
        self.store = store
        self.blobs = blobs
        self.scorer = scorer
        self.max_attempts = max_attempts
        self.enqueue = enqueue
        self.lease_seconds = lease_seconds
        self.commit_patience = commit_patience
        self.pause = pause

    def process(self, job_id: str, index: int) -> str:
        """Handle one delivery of chunk `index` of `job_id`; returns what happened (for logs and tests)."""
        lease = lease_text(self.store.clock())
        decision = self.store.start_chunk(
            job_id, index, lease, self.max_attempts, (str(self.scorer.version), str(self.scorer.sha256))
        )
        if decision.action == StartAction.EXHAUSTED:
            message = f"chunk failed after {min(decision.attempt, self.max_attempts)} attempts: {decision.reason}"
            if decision.attempt > self.max_attempts:
                # Even failing its rows one by one did not finish: the chunk cannot be read at all.
                return close_job(self.store, self.blobs, job_id, JobState.FAILED, "chunk_unreadable",
                                 f"chunk {index}: {message}")
            return self._fail(job_id, index, message)
        if decision.action != StartAction.RUN:
            return decision.action
        held = f"{lease}|{decision.attempt}"
        with LeaseHeartbeat(lambda: self.store.renew_lease(job_id, index, held), self.lease_seconds / 3):
            return self._score(job_id, index, decision, held)

    def _read(self, job_id: str, index: int, fields: dict[str, str]) -> ChunkInput:
        """Read the chunk's staged input from the blob store: parse a range, read row groups, or decode arrow."""
        staged = self.store.chunk(job_id, index)
        if staged is None:
            raise InputLost(f"chunk {index} was never staged")
        passthrough = fields.get("passthrough") or None
        try:
            if staged.kind.startswith("parquet:"):
                return self._read_row_groups(job_id, staged, self.scorer.required_columns, passthrough)
            data = self.blobs.read_bytes(self.blobs.staged_path(job_id, index, staged.kind))
        except FileNotFoundError:
            raise InputLost("the chunk's staged input was lost before it could be scored") from None
        if staged.kind == "arrow":
            table, parse_errors = decode_staged(data)
            return ChunkInput(staged, table, parse_errors, staged.records or 0)
        chunk = parse_range(data, staged.kind, fields.get("csv_header", "").encode("utf-8"),
                            columns=self.scorer.required_columns, passthrough=passthrough)
        return ChunkInput(staged, chunk.table, errors_table(chunk.errors), chunk.rows)

    def _read_row_groups(self, job_id: str, staged: StagedChunk, columns: Any, passthrough: str | None) -> ChunkInput:
        """A Parquet chunk: its row groups read from the uploaded file (only the kept columns)."""
        groups = RowGroups.parse(staged.kind.split(":", 1)[1], staged.records or 0)
        with self.blobs.fs.open_input_file(self.blobs.upload_path(job_id)) as source:
            chunk = read_chunk(open_file(source), groups, columns, passthrough)
        return ChunkInput(staged, chunk.table, errors_table(chunk.errors), chunk.rows)

    def _score(self, job_id: str, index: int, decision: StartDecision, lease: str) -> str:
        """Parse and score the chunk, then commit; on an error, give the chunk back for another attempt or fail it."""
        started = time.perf_counter()
        try:
            fields = self.store.fields(job_id) or {}
            if fields.get("model_sha256", self.scorer.sha256) != self.scorer.sha256:
                # A worker with another model (say, mid-deploy) must not score this job: leave it to the others.
                raise ModelMismatch(f"this worker serves model {self.scorer.version} ({self.scorer.sha256[:12]}), "
                                    f"the job was created for {fields.get('model_version')} "
                                    f"({fields['model_sha256'][:12]})")
            read = self._read(job_id, index, fields)
            scored, result = score_chunk(self.scorer, read.table, fields.get("passthrough") or None)
            errors = pa.concat_tables([read.parse_errors, errors_table(scored.errors)]).sort_by("row")
            summary = self._summary(scored, errors)
        except InputLost as exc:
            return self._fail(job_id, index, str(exc))
        except ReadError as exc:
            # The range is not readable as a body: the whole upload is, as the API would have answered.
            reason = f"{exc.code}: {exc.message} (in chunk {index}; lines counted from the chunk's first line)"
            return close_job(self.store, self.blobs, job_id, JobState.FAILED, exc.code, reason)
        except Exception as exc:
            # Any failure of this attempt (including the soft time limit) is recorded and retried, bounded.
            reason = f"{type(exc).__name__}: {exc}"
            self.store.release_lease(job_id, index, lease, reason)
            if decision.attempt >= self.max_attempts:
                return self._fail(job_id, index, f"chunk failed after {decision.attempt} attempts: {reason}")
            self.enqueue(job_id, index)
            return "retrying"
        return self._commit(job_id, index, read, result, errors, time.perf_counter() - started, summary)

    def _commit(self, job_id: str, index: int, read: ChunkInput, result: pa.Table, errors: pa.Table,
                seconds: float | None, summary: ChunkCounters | None = None) -> str:
        """Write this attempt's files under a fresh token, then commit their name once (or delete them)."""
        output = ChunkOutput(secrets.token_hex(8), read.records, result.num_rows > 0, errors.num_rows > 0)
        written: list[str] = []
        try:
            for part, table in (("res", result), ("err", errors)):
                if table.num_rows:
                    payload = encode_table(table)
                    self.blobs.ensure_room(len(payload))
                    written.append(self.blobs.output_path(job_id, index, output.token, part))
                    self.blobs.write(written[-1], payload)
        except InsufficientStorage as exc:
            fail_for_storage(self.store, self.blobs, job_id, str(exc))
            return JobState.FAILED
        outcome = self._commit_with_patience(job_id, index, output, result.num_rows, distinct_rows(errors),
                                             read.staged.size, seconds, summary)
        if outcome == "ignored":
            self.blobs.delete_many(written)  # another attempt committed: these files are never referenced
        elif outcome not in ("committed", "finished"):
            discard_late(self.store, self.blobs, job_id, written)  # the job closed (or expired) meanwhile
        if outcome in ("committed", "finished", "ignored") and not read.staged.kind.startswith("parquet:"):
            self.blobs.delete(self.blobs.staged_path(job_id, index, read.staged.kind))
        if outcome == "finished":
            # What the chunks shared (a Parquet upload), or a leftover of an attempt that died after its commit.
            self.blobs.delete_many(self.blobs.staged_files(job_id))
        return outcome

    def _commit_with_patience(self, job_id: str, index: int, output: ChunkOutput, rows_scored: int, rows_failed: int,
                              size: int, seconds: float | None, summary: ChunkCounters | None) -> str:
        """`commit_chunk`, tried again for up to `commit_patience` seconds while Redis cannot be reached."""
        deadline = self.store.clock() + self.commit_patience
        while True:
            try:
                return self.store.commit_chunk(job_id, index, output, rows_scored, rows_failed, size,
                                               seconds=seconds, summary=summary)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self.store.clock() + COMMIT_RETRY_PAUSE > deadline:
                    raise
                log.warning("commit of job %s chunk %s did not reach Redis (%s); trying again", job_id, index, exc)
                self.pause(COMMIT_RETRY_PAUSE)

    def _fail(self, job_id: str, index: int, message: str) -> str:
        """Commit the chunk with every row as a row error carrying `message`.

        The chunk is parsed (not scored) to know its records; when its input is gone and the API did not count
        them, its rows cannot be placed, and the job fails instead.
        """
        try:
            read = self._read(job_id, index, self.store.fields(job_id) or {})
        except (InputLost, ReadError, StagingError) as exc:
            staged = self.store.chunk(job_id, index)
            if staged is None or staged.records is None:
                return close_job(self.store, self.blobs, job_id, JobState.FAILED, "chunk_unreadable",
                                 f"chunk {index}: {message} ({exc})")
            read = ChunkInput(staged, ERROR_SCHEMA.empty_table(), ERROR_SCHEMA.empty_table(), staged.records)
        errors = failed_chunk_errors(0, read.records, read.parse_errors, message)
        return self._commit(job_id, index, read, pa.table({"row": pa.array([], pa.int64())}), errors, None,
                            ChunkCounters(error_counters(errors)))

    def _summary(self, scored: Any, errors: pa.Table) -> ChunkCounters:
        """What this scored chunk adds to its job's score and data-quality summary."""
        return chunk_counters(scored, errors, self.scorer.input_columns,
                              self.scorer.artifact.params.categorical_levels)
