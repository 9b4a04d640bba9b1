"""JobService: the job operations the API calls (create, stage, seal, read, list, cancel, results)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import redis

from core.clock import Clock, system_clock
from core.settings import Settings
from core.states import OPEN_STATES, JobState
from jobs.blob_store import BlobStore, Buffer, Deleted
from jobs.errors import JobExpired, JobNotFound
from jobs.job_store import JobStore
from jobs.keys import broker_queue_lists, id_expiry
from jobs.lifecycle import close_job, discard_late, fail_for_storage
from jobs.processing import Enqueue
from jobs.reaper import fail_if_stuck
from jobs.staging import read_table, staged_arrow
from jobs.view import JobObject, int_field, iso_time, render_job
from model.errors import RowError

__all__ = ["JobExpired", "JobNotFound", "JobService"]

# Redis expires a job's keys on its own clock; this much skew still answers 410 rather than 404.
CLOCK_SKEW_SECONDS = 5
# Extra index entries read per page so that jobs created in the same microsecond are not skipped.
TIE_SLACK = 8


class JobService:
    """Jobs stored in Redis and scored by Celery workers.

    Job objects: see `jobs.view.JobObject`. A succeeded job's `outcome` is `all_rows_scored` or
    `some_rows_failed`; a failed or cancelled one has a `reason`.

    Redis holds the job's state; its staged inputs and results are files in the blob store (`blobs`).
    """

    def __init__(self, redis_client: redis.Redis, settings: Settings, *, enqueue: Enqueue | None = None,
                 notify: Callable[[str], None] | None = None, blobs: BlobStore | None = None,
                 clock: Clock = system_clock) -> None:
        """`clock` is the store's: every time recorded, every expiry and age judged (see `JobStore`)."""
        self.settings = settings
        self.store = JobStore(redis_client, settings.key_prefix, on_closed=self.notify, clock=clock)
        self.blobs = blobs or BlobStore.from_uri(settings.store_uri, settings.store_reserve_bytes)
        self._enqueue = enqueue
        self._notify = notify

    def enqueue(self, job_id: str, index: int) -> None:
        """Queue score_chunk(job_id, index) through the queue this service was given."""
        if self._enqueue is None:
            raise RuntimeError("this JobService was created without a queue (see worker.dispatch.job_service)")
        self._enqueue(job_id, index)

    def notify(self, job_id: str) -> None:
        """Queue the closed job's webhook delivery (called once per job by the store; a no-op without a queue)."""
        if self._notify is not None:
            self._notify(job_id)

    def create(self, tenant: str, *, fmt: str, passthrough: str | None = None,
               model: Mapping[str, str] | None = None, header: bytes = b"", request_id: str | None = None,
               callback_url: str | None = None) -> JobObject:
        """Create a queued job for `tenant` whose upload is about to be staged; returns the job object.

        `header` is a CSV body's header line: workers parse each range after it. `request_id` is the
        submitting request's (workers log it with the job's lines); `callback_url` receives the signed webhook
        when the job closes.
        """
        fields = {"fmt": fmt, "passthrough": passthrough or "", "csv_header": header.decode("utf-8"),
                  "request_id": request_id or "", "callback_url": callback_url or ""}
        if model:
            fields |= {"model_version": str(model["version"]), "model_sha256": str(model["sha256"])}
        job_id, _, _ = self.store.create(tenant, fields, self.settings.job_ttl_seconds)
        return self._render(job_id, self._fields(job_id))

    def touch_upload(self, job_id: str) -> bool:
        """Tell the reaper the upload is alive while a chunk's bytes are still arriving (False: stop uploading)."""
        return self.store.touch_upload(job_id)

    def stage_range(self, job_id: str, index: int, data: Buffer | Sequence[Buffer], fmt: str) -> bool:
        """Stage chunk `index` as a record-aligned range of the body (parsed by the worker) and queue it.

        `data` is the range, or its consecutive parts (written in turn, never joined).
        Returns False when the job is closed or the index was staged already; raises JobNotFound when the job
        is gone, InsufficientStorage when the store would go below its reserve (nothing is written then).
        """
        return self._stage(job_id, index, fmt, data, None)

    def stage_chunk(self, job_id: str, index: int, table: pa.Table, errors: Sequence[RowError]) -> bool:
        """Stage chunk `index` already parsed (int64 `row` + input columns, and its parse errors) and queue it.

        Rows are stored numbered from the chunk's first record: like every chunk, its rows get their place
        in the body when read back. Same answers as `stage_range`; ValueError for a chunk without any record.
        """
        # Every record the reader consumed is either in the table or an error: together they span the chunk.
        bounds = [e.row for e in errors]
        if table.num_rows:
            rows = table["row"].to_numpy()
            bounds += [int(rows.min()), int(rows.max())]
        if not bounds:
            raise ValueError(f"chunk {index} of job {job_id} holds no record")
        first_row, last_row = min(bounds), max(bounds)
        return self._stage(job_id, index, "arrow", staged_arrow(table, errors, first_row), last_row - first_row + 1)

    def write_upload(self, job_id: str, blocks: Iterable[bytes]) -> int:
        """Write a body kept whole (a Parquet file) to the job's directory as it arrives; returns its size.

        Raises InsufficientStorage (checked before each block) when the store would go below its reserve.
        """
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for block in blocks:
                self.blobs.ensure_room(len(block))
                size += len(block)
                yield block

        self.blobs.write(self.blobs.upload_path(job_id), counted())
        return size

    def stage_row_groups(self, job_id: str, index: int, groups: str, size: int, records: int) -> bool:
        """Stage chunk `index` as row groups `groups` ("first-last") of the job's Parquet upload, and queue it."""
        status = self.store.stage(job_id, index, f"parquet:{groups}", size, records)
        if status == "gone":
            raise JobNotFound(job_id)
        if status != "staged":
            return False
        self.enqueue(job_id, index)
        return True

    def _stage(self, job_id: str, index: int, kind: str, data: Buffer | Sequence[Buffer], records: int | None) -> bool:
        """Write the staged input, register it, queue it; its file is deleted when it cannot be registered."""
        size = len(data) if isinstance(data, Buffer) else sum(len(part) for part in data)
        self.blobs.ensure_room(size)
        path = self.blobs.staged_path(job_id, index, kind)
        self.blobs.write(path, data)
        status = self.store.stage(job_id, index, kind, size, records)
        if status != "staged":
            if status != "duplicate":
                discard_late(self.store, self.blobs, job_id, [path])
            if status == "gone":
                raise JobNotFound(job_id)
            return False
        self.enqueue(job_id, index)
        return True

    def seal(self, job_id: str, rows_total: int | None, chunks_total: int, *, bytes_received: int | None = None,
             sha256: str | None = None) -> JobObject:
        """Mark the upload complete; the job succeeds at once if every chunk already committed.

        Call it only once the whole body arrived; `bytes_received` and `sha256` (hex) record what did. The
        totals must match what was staged (chunks staged; records consumed when the API counted them, None
        when the workers count them), else the job fails at once with a reason instead of waiting for chunks
        that will never come.
        """
        record = {"bytes_received": bytes_received} if bytes_received is not None else {}
        record |= {"sha256": sha256} if sha256 else {}
        if self.store.seal(job_id, rows_total, chunks_total, record) == "gone":
            raise JobNotFound(job_id)
        return self._render(job_id, self._fields(job_id))

    def abort_upload(self, job_id: str, code: str, reason: str, *, bytes_received: int | None = None,
                     bytes_expected: int | None = None) -> None:
        """Fail a job whose upload could not be completed (body cut short, unreadable, too large, client gone).

        Everything it staged or already scored is deleted at once: a result of part of an upload is never
        shown. `code` is the stable reason code (`upload_incomplete`, `digest_mismatch`, a read error's code).
        """
        record = {"bytes_received": bytes_received} if bytes_received is not None else {}
        record |= {"bytes_expected": bytes_expected} if bytes_expected is not None else {}
        close_job(self.store, self.blobs, job_id, JobState.FAILED, code, reason, purge=True, record=record)

    def fail_for_storage(self, job_id: str, message: str) -> JobObject:
        """Fail a job the store has no room for, deleting everything it wrote there; returns the job."""
        fail_for_storage(self.store, self.blobs, job_id, message)
        return self._render(job_id, self._fields(job_id))

    def get(self, tenant: str, job_id: str) -> JobObject:
        """The tenant's job; JobNotFound for unknown or foreign ids, JobExpired past its retention."""
        fields = self._owned(tenant, job_id)
        if fail_if_stuck(self.store, self.blobs, self.settings, job_id, fields):
            fields = self._fields(job_id)
        return self._render(job_id, fields)

    def list(self, tenant: str, limit: int = 50, cursor: str | None = None) -> tuple[list[JobObject], str | None]:
        """The tenant's live jobs, newest first, `limit` per page; pass the returned cursor for the next page."""
        score_text, _, after_id = (cursor or "").partition(":")
        max_score = int(score_text) if score_text.isdigit() else None
        entries = self.store.tenant_page(tenant, str(max_score) if max_score else "+inf", limit + 1 + TIE_SLACK)
        now = self.store.clock()
        entries = [
            (job_id, score) for job_id, score in entries
            # Equal scores come in descending id order: those at or above the cursor's id were already returned.
            if not (score == max_score and job_id >= after_id) and (id_expiry(job_id) or 0) > now
        ][: limit + 1]
        found = self.store.many_fields([job_id for job_id, _ in entries])
        owned = [(job_id, score, f) for (job_id, score), f in zip(entries, found, strict=True)
                 if f is not None and f.get("tenant") == tenant]
        page = owned[:limit]
        next_cursor = f"{page[-1][1]}:{page[-1][0]}" if len(owned) > limit else None
        return [render_job(job_id, f, now) for job_id, _, f in page], next_cursor

    def cancel(self, tenant: str, job_id: str) -> JobObject:
        """Cancel the tenant's job: chunks not started are skipped, scored ones stay readable."""
        self._owned(tenant, job_id)
        close_job(self.store, self.blobs, job_id, JobState.CANCELLED, "cancelled", "cancelled by the client")
        return self._render(job_id, self._fields(job_id))

    def purge(self, tenant: str, job_id: str) -> tuple[JobObject, Deleted]:
        """Cancel the tenant's job if it is open and delete all of its data now; returns the job and what went.

        The job record stays until it expires (with `purged_at`; its results and errors read empty).
        """
        self._owned(tenant, job_id)
        self.store.close(job_id, JobState.CANCELLED, "purged", "purged by the client")
        self.store.mark_purged(job_id)
        deleted = self.blobs.delete_job(job_id)
        return self._render(job_id, self._fields(job_id)), deleted

    def iter_result_tables(self, tenant: str, job_id: str) -> Iterator[pa.Table]:
        """Scored rows of every committed chunk, in input order (also while the job still runs)."""
        return self._iter_tables(tenant, job_id, "res")

    def iter_error_tables(self, tenant: str, job_id: str) -> Iterator[pa.Table]:
        """Row errors (row, column, message) of every committed chunk, in input order."""
        return self._iter_tables(tenant, job_id, "err")

    def queued_rows(self) -> int:
        """Rows staged but not yet scored, over every open job (for backpressure on new uploads)."""
        job_ids = self.store.active_jobs()
        total = 0
        for fields in self.store.many_fields(job_ids):
            if fields and fields.get("state") in OPEN_STATES:
                done = int_field(fields, "rows_scored") + int_field(fields, "rows_failed")
                total += int_field(fields, "rows_staged") - done
        return max(total, 0)

    def queued_bytes(self) -> int:
        """Bytes staged but not yet scored, over every open job (backpressure counts bytes, not only rows)."""
        total = 0
        for fields in self.store.many_fields(self.store.active_jobs()):
            if fields and fields.get("state") in OPEN_STATES:
                total += int_field(fields, "bytes_staged") - int_field(fields, "bytes_done")
        return max(total, 0)

    def state_counts(self) -> dict[str, int]:
        """Live (unexpired) jobs by state, over every tenant; states with no job are absent."""
        return self.store.state_counts()

    def metrics(self) -> dict[str, Any]:
        """Cluster-wide chunk counters: rows scored/failed, chunks scored/failed, chunk latency histogram.

        Keys: `rows_scored`, `rows_failed`, `chunks_scored`, `chunks_failed`, `seconds_buckets` (cumulative
        `(le, count)` pairs, "+Inf" last), `seconds_sum`, `seconds_count`, `commits_refused` (by reason).
        """
        return dataclasses.asdict(self.store.chunk_metrics())

    def queue_depth(self) -> int:
        """Chunk messages waiting in the broker queue (kombu's Redis transport: one list per priority step)."""
        pipe = self.store.redis.pipeline(transaction=False)
        for name in broker_queue_lists(self.settings.queue_name):
            pipe.llen(name)
        return sum(pipe.execute())

    def _iter_tables(self, tenant: str, job_id: str, part: str) -> Iterator[pa.Table]:
        """Tables of committed chunks with global row numbers.

        A chunk's rows are numbered from its first record; its place in the body is the sum of the records
        of every chunk before it. So only the committed chunks before the first one not yet committed can be
        placed: while a job runs, that is the results so far.
        """
        self._owned(tenant, job_id)
        outputs = self.store.outputs(job_id)  # (none once purged)
        offset = 0
        index = 0
        while (output := outputs.get(index)) is not None:
            if output.has_result if part == "res" else output.has_errors:
                table = read_table(self.blobs, self.blobs.output_path(job_id, index, output.token, part))
                if offset:
                    at = table.schema.get_field_index("row")
                    table = table.set_column(at, "row", pc.add(table["row"], pa.scalar(offset, pa.int64())))
                yield table
            offset += output.records
            index += 1

    def _fields(self, job_id: str) -> dict[str, str]:
        fields = self.store.fields(job_id)
        if fields is None:
            raise self._missing(job_id)
        return fields

    def _owned(self, tenant: str, job_id: str) -> dict[str, str]:
        """The job's fields if it exists and belongs to `tenant`."""
        expiry = id_expiry(job_id)
        if expiry is None:
            raise JobNotFound(job_id)
        if expiry <= self.store.clock():
            raise JobExpired(job_id, iso_time(expiry) or "")
        fields = self._fields(job_id)
        if fields.get("tenant") != tenant:
            raise JobNotFound(job_id)
        return fields

    def _missing(self, job_id: str) -> Exception:
        """JobExpired when the id's expiry is (nearly) past, else JobNotFound."""
        expiry = id_expiry(job_id)
        if expiry is not None and expiry <= self.store.clock() + CLOCK_SKEW_SECONDS:
            return JobExpired(job_id, iso_time(expiry) or "")
        return JobNotFound(job_id)

    def _render(self, job_id: str, fields: dict[str, str]) -> JobObject:
        return render_job(job_id, fields, self.store.clock())

