"""JobService: the job operations the API calls (create, stage, seal, read, list, cancel, results)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import redis

from core.clock import Clock, system_clock
from core.settings import Settings
from core.states import OPEN_STATES, WEBHOOK_WAITING, JobState
from jobs.blob_store import BlobStore, Buffer, Deleted
from jobs.errors import JobExpired, JobNotFound
from jobs.job_store import JobStore
from jobs.keys import broker_queue_lists, id_expiry
from jobs.lifecycle import close_job, discard_late, fail_for_storage
from jobs.processing import Enqueue
from jobs.reaper import fail_if_stuck
from jobs.staging import read_table, staged_arrow
from model.errors import RowError

__all__ = ["JobExpired", "JobNotFound", "JobService"]

# Redis expires a job's keys on its own clock; this much skew still answers 410 rather than 404.
CLOCK_SKEW_SECONDS = 5
# Extra index entries read per page so that jobs created in the same microsecond are not skipped.
TIE_SLACK = 8


def _iso(epoch: str | float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, or None."""
    if epoch in (None, ""):
        return None
    stamp = datetime.fromtimestamp(float(epoch), tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(fields: Mapping[str, str], name: str) -> int:
    return int(fields.get(name) or 0)


def _upload(f: Mapping[str, str], sealed: bool) -> dict[str, Any]:
    """What arrived of the job's body: its size and sha256 once complete, what was expected when it was cut."""
    return {
        "complete": sealed,
        "bytes_received": int(f["bytes_received"]) if f.get("bytes_received") else None,
        "bytes_expected": int(f["bytes_expected"]) if f.get("bytes_expected") else None,
        "sha256": f.get("sha256") or None,
        "results_deleted": bool(f.get("purged_at")),
    }


def render_webhook(f: Mapping[str, str]) -> dict[str, Any] | None:
    """Delivery of the job's callback: `state` waiting (job still open) | pending | retrying | delivered |
    failed | refused, attempts made, the last HTTP status and error; None when the job has no callback."""
    url = f.get("callback_url")
    if not url:
        return None
    return {
        "url": url,
        "state": f.get("webhook_state") or WEBHOOK_WAITING,
        "attempts": _int(f, "webhook_attempts"),
        "last_status": _int(f, "webhook_last_status") or None,
        "last_error": f.get("webhook_last_error") or None,
    }


def render_job(job_id: str, f: Mapping[str, str], now: float) -> dict[str, Any]:
    """The public job object built from its stored fields."""
    sealed = f.get("sealed") == "1"
    chunks_total = _int(f, "chunks_total") if sealed else _int(f, "chunks_staged")
    rows_failed = _int(f, "rows_failed")
    rows_done = _int(f, "rows_scored") + rows_failed
    # Records are counted as they are parsed: by the API for a JSON array, by the workers for CSV and NDJSON.
    rows_total = max(_int(f, "rows_staged"), _int(f, "rows_read"))
    bytes_total, bytes_done = _int(f, "bytes_staged"), _int(f, "bytes_done")
    state = f["state"]
    started = float(f["started_at"]) if f.get("started_at") else None
    ended = float(f["finished_at"]) if f.get("finished_at") else now
    elapsed = ended - started if started is not None else 0.0
    rate = rows_done / elapsed if elapsed > 0 and rows_done else None
    if state == JobState.SUCCEEDED:
        progress, eta = 1.0, 0.0
    else:
        progress = min(bytes_done / bytes_total, 1.0) if bytes_total else 0.0
        byte_rate = bytes_done / elapsed if elapsed > 0 and bytes_done else None
        eta = ((bytes_total - bytes_done) / byte_rate if sealed and byte_rate and state in OPEN_STATES else None)
    model = {"version": f["model_version"], "sha256": f["model_sha256"]} if f.get("model_version") else None
    return {
        "id": job_id,
        "state": state,
        "outcome": f.get("outcome") or None,
        "reason": f.get("reason") or None,
        "reason_code": f.get("reason_code") or None,
        "format": f.get("fmt") or None,
        "passthrough": f.get("passthrough") or None,
        "upload_complete": sealed,
        "upload": _upload(f, sealed),
        "created_at": _iso(f.get("created_at")),
        "started_at": _iso(f.get("started_at")),
        "finished_at": _iso(f.get("finished_at")),
        "expires_at": _iso(f.get("expires_at")),
        "purged_at": _iso(f.get("purged_at")),
        "rows_total": rows_total,
        "rows_done": rows_done,
        "rows_failed": rows_failed,
        "chunks_total": chunks_total,
        "chunks_done": _int(f, "chunks_done"),
        "bytes_total": bytes_total,
        "bytes_done": bytes_done,
        "progress": round(progress, 6),
        "rows_per_second": round(rate, 3) if rate else None,
        "eta_seconds": round(eta, 3) if eta is not None else None,
        "model": model,
        "request_id": f.get("request_id") or None,
        "webhook": render_webhook(f),
    }


class JobService:
    """Jobs stored in Redis and scored by Celery workers.

    Job object fields: see `render_job`. `rows_done` counts rows with a final outcome (scored or failed);
    `rows_failed` those of them that failed. A succeeded job's `outcome` is `all_rows_scored` or
    `some_rows_failed`; a failed or cancelled one has a `reason`. Until the upload is sealed,
    `chunks_total`/`bytes_total` count what was staged so far and `upload_complete` is false; `rows_total`
    counts the records parsed so far (exact once the job succeeded).

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
               callback_url: str | None = None) -> dict[str, Any]:
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
             sha256: str | None = None) -> dict[str, Any]:
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

    def fail_for_storage(self, job_id: str, message: str) -> dict[str, Any]:
        """Fail a job the store has no room for, deleting everything it wrote there; returns the job."""
        fail_for_storage(self.store, self.blobs, job_id, message)
        return self._render(job_id, self._fields(job_id))

    def get(self, tenant: str, job_id: str) -> dict[str, Any]:
        """The tenant's job; JobNotFound for unknown or foreign ids, JobExpired past its retention."""
        fields = self._owned(tenant, job_id)
        if fail_if_stuck(self.store, self.blobs, self.settings, job_id, fields):
            fields = self._fields(job_id)
        return self._render(job_id, fields)

    def list(self, tenant: str, limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
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

    def cancel(self, tenant: str, job_id: str) -> dict[str, Any]:
        """Cancel the tenant's job: chunks not started are skipped, scored ones stay readable."""
        self._owned(tenant, job_id)
        close_job(self.store, self.blobs, job_id, JobState.CANCELLED, "cancelled", "cancelled by the client")
        return self._render(job_id, self._fields(job_id))

    def purge(self, tenant: str, job_id: str) -> tuple[dict[str, Any], Deleted]:
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
                total += _int(fields, "rows_staged") - _int(fields, "rows_scored") - _int(fields, "rows_failed")
        return max(total, 0)

    def queued_bytes(self) -> int:
        """Bytes staged but not yet scored, over every open job (backpressure counts bytes, not only rows)."""
        total = 0
        for fields in self.store.many_fields(self.store.active_jobs()):
            if fields and fields.get("state") in OPEN_STATES:
                total += _int(fields, "bytes_staged") - _int(fields, "bytes_done")
        return max(total, 0)

    def state_counts(self) -> dict[str, int]:
        """Live (unexpired) jobs by state, over every tenant; states with no job are absent."""
        return self.store.state_counts()

    def metrics(self) -> dict[str, Any]:
        """Cluster-wide chunk counters: rows scored/failed, chunks scored/failed, chunk latency histogram.

        Keys: `rows_scored`, `rows_failed`, `chunks_scored`, `chunks_failed`, `seconds_buckets` (cumulative
        `(le, count)` pairs, "+Inf" last), `seconds_sum`, `seconds_count`.
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
            raise JobExpired(job_id, _iso(expiry) or "")
        fields = self._fields(job_id)
        if fields.get("tenant") != tenant:
            raise JobNotFound(job_id)
        return fields

    def _missing(self, job_id: str) -> Exception:
        """JobExpired when the id's expiry is (nearly) past, else JobNotFound."""
        expiry = id_expiry(job_id)
        if expiry is not None and expiry <= self.store.clock() + CLOCK_SKEW_SECONDS:
            return JobExpired(job_id, _iso(expiry) or "")
        return JobNotFound(job_id)

    def _render(self, job_id: str, fields: dict[str, str]) -> dict[str, Any]:
        return render_job(job_id, fields, self.store.clock())

