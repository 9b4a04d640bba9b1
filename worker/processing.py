"""What a worker does with one chunk: count the attempt, score the staged rows, commit the outcome once."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from worker.job_store import JobStore, StartDecision
from worker.staging import ERROR_SCHEMA, StagingError, decode_staged, encode_table, errors_table
from worker.summary import ChunkCounters, chunk_counters, error_counters

Enqueue = Callable[[str, int], None]


class ModelMismatch(RuntimeError):
    """The worker's model is not the one the job was created for."""


def lease_text() -> str:
    """This process's lease prefix: "hostname|pid|started_at" (the store appends the attempt number)."""
    return f"{socket.gethostname()}|{os.getpid()}|{time.time()!r}"


def result_table(scored: Any, inputs: pa.Table, passthrough: str | None) -> pa.Table:
    """Scored rows as a table: `row`, the scorer's outputs and the passthrough column, columns sorted by name."""
    table = scored.to_arrow()
    if passthrough and passthrough in inputs.column_names:
        # Input rows are ascending and unique, so positions of the scored rows come from a binary search.
        positions = np.searchsorted(inputs["row"].to_numpy(), table["row"].to_numpy())
        table = table.append_column(passthrough, inputs[passthrough].take(pa.array(positions)))
    return table.select(sorted(table.column_names))


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


def distinct_rows(errors: pa.Table) -> int:
    """Number of distinct rows with at least one error."""
    return int(pc.count_distinct(errors["row"]).as_py()) if errors.num_rows else 0


class ChunkProcessor:
    """Scores chunks of jobs in one worker process with the process's one scorer."""

    def __init__(self, store: JobStore, scorer: Any, max_attempts: int, enqueue: Enqueue) -> None:
        self.store = store
        self.scorer = scorer
        self.max_attempts = max_attempts
        self.enqueue = enqueue

    def process(self, job_id: str, index: int) -> str:
        """Handle one delivery of chunk `index` of `job_id`; returns what happened (for logs and tests)."""
        lease = lease_text()
        decision = self.store.start_chunk(
            job_id, index, lease, self.max_attempts, (str(self.scorer.version), str(self.scorer.sha256))
        )
        if decision.action == "exhausted":
            return self._fail(job_id, index, f"chunk failed after {decision.attempt} attempts: {decision.reason}")
        if decision.action != "run":
            return decision.action
        return self._score(job_id, index, decision, f"{lease}|{decision.attempt}")

    def _score(self, job_id: str, index: int, decision: StartDecision, lease: str) -> str:
        """Score the staged rows and commit; on an error, give the chunk back for another attempt or fail it."""
        started = time.perf_counter()
        try:
            payload = self.store.staged_payload(job_id, index)
            if payload is None:
                return self._fail(job_id, index, "the chunk's staged input was lost before it could be scored")
            inputs, parse_errors = decode_staged(payload)
            fields = self.store.fields(job_id) or {}
            if fields.get("model_sha256", self.scorer.sha256) != self.scorer.sha256:
                # A worker with another model (say, mid-deploy) must not score this job: leave it to the others.
                raise ModelMismatch(f"this worker serves model {self.scorer.version} ({self.scorer.sha256[:12]}), "
                                    f"the job was created for {fields.get('model_version')} "
                                    f"({fields['model_sha256'][:12]})")
            passthrough = fields.get("passthrough") or None
            scored = self.scorer.score_frame(inputs)
            result = result_table(scored, inputs, passthrough)
            errors = pa.concat_tables([parse_errors, errors_table(scored.errors)]).sort_by("row")
            summary = self._summary(scored, errors)
        except Exception as exc:
            # Any failure of this attempt (including the soft time limit) is recorded and retried, bounded.
            reason = f"{type(exc).__name__}: {exc}"
            self.store.release_lease(job_id, index, lease, reason)
            if decision.attempt >= self.max_attempts:
                return self._fail(job_id, index, f"chunk failed after {decision.attempt} attempts: {reason}")
            self.enqueue(job_id, index)
            return "retrying"
        return self.store.commit_chunk(
            job_id, index,
            encode_table(result) if result.num_rows else b"",
            encode_table(errors) if errors.num_rows else b"",
            result.num_rows, distinct_rows(errors), seconds=time.perf_counter() - started, summary=summary,
        )

    def _fail(self, job_id: str, index: int, message: str) -> str:
        """Commit the chunk with every row as a row error carrying `message`."""
        span = self.store.chunk_range(job_id, index)
        if span is None:
            return "gone"
        payload = self.store.staged_payload(job_id, index)
        try:
            parse_errors = decode_staged(payload)[1] if payload else ERROR_SCHEMA.empty_table()
        except StagingError:
            parse_errors = ERROR_SCHEMA.empty_table()
        errors = failed_chunk_errors(span[0], span[1], parse_errors, message)
        return self.store.commit_chunk(job_id, index, b"", encode_table(errors), 0, distinct_rows(errors),
                                       seconds=None, summary=ChunkCounters(error_counters(errors)))

    def _summary(self, scored: Any, errors: pa.Table) -> ChunkCounters:
        """What this scored chunk adds to its job's score and data-quality summary."""
        return chunk_counters(scored, errors, self.scorer.input_columns,
                              self.scorer.artifact.params.categorical_levels)
