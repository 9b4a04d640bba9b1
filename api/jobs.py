"""/v1/jobs: submit a streamed upload, poll, list, cancel, and stream results and row errors back."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from typing import Any

from flask import Blueprint, Response, g, request, stream_with_context

from api import idempotency
from api.callbacks import requested_callback
from api.errors import ApiError, read_error_to_api
from api.heartbeat import HeartbeatStream
from api.limits import check_backpressure
from api.metrics import api_metrics
from api.request_id import current_request_id
from api.responses import json_response
from api.schemas import present
from api.services import require_tenant, services
from api.uploads import BodyReceipt, IncompleteBody, Upload, digest_mismatch, open_upload
from core.formats import FORMATS
from jobs.blob_store import InsufficientStorage
from jobs.keys import JOB_ID_PATTERN
from model.memory import release_free_heap
from model.prefetch import read_ahead
from model.ranges import RANGE_FORMATS, RecordRanges, split_records
from model.readers import READ_BLOCK, Chunk, ReadError, iter_chunks
from model.readers.parquet import check_schema as check_parquet_schema
from model.readers.parquet import group_chunks
from model.readers.parquet import open_file as open_parquet
from model.writers import OUTPUT_FORMATS, iter_encoded

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
bp.before_request(require_tenant)

# Anything but a job id (jobs.keys) is answered 404 without touching Redis.
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
MAX_ID_COLUMN_CHARS = 128
PASSTHROUGH_RE = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_ID_COLUMN_CHARS}}}")
RESULT_MEDIA_TYPES = {name: FORMATS[name].content_type for name in OUTPUT_FORMATS}
# Accept is matched against each format's media type; when a client likes several equally, the first here wins.
ACCEPT_FORMATS = {FORMATS[name].media_type: name for name in ("json", "ndjson", "csv", "parquet")}
DEFAULT_PAGE, MAX_PAGE = 20, 100
# CSV result blocks encoded at once per download: pyarrow's float formatting is most of a download's CPU
# (about 1.8 s per million result rows), and by the time results are fetched the workers are mostly idle.
ENCODE_THREADS = 2
PAGE_RE = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit() also accepts '²'
# A cursor is what the job service hands out: "<created_us>:<job id>" (ASCII digits, fullmatch: no newline);
# an empty one is no cursor (the first page).
CURSOR_RE = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,64}")


def job_id_or_404(job_id: str) -> str:
    """`job_id` if it looks like one, else 404 at once."""
    if not JOB_ID_RE.fullmatch(job_id):
        raise ApiError(404, "job_not_found", "job not found", {"job_id": job_id[:64]})
    return job_id


def _passthrough() -> str | None:
    """The `id_column` query parameter, refused when unprintable or named like a result column."""
    name = request.args.get("id_column")
    if name is None:
        return None
    if not PASSTHROUGH_RE.fullmatch(name):
        raise ApiError(400, "invalid_parameter", f"id_column must be 1 to {MAX_ID_COLUMN_CHARS} printable characters",
                       {"id_column": name})
    if name == "row" or name in services().scorer.output_columns:
        raise ApiError(
            400, "invalid_parameter", f"id_column {name!r} is the name of a result column", {"id_column": name}
        )
    return name


class UploadStopped(Exception):
    """The job was closed (cancelled or failed) while its upload was still being staged."""


def _read_chunks(stream: Any, fmt: str, passthrough: str | None) -> Iterator[Chunk]:
    """The upload's chunks; the first is read at once, so a bad header or first record is refused before a job
    exists."""
    svc = services()
    try:
        chunks = iter_chunks(
            stream,
            fmt,
            columns=list(svc.scorer.required_columns),
            chunk_rows=svc.settings.chunk_rows,
            passthrough=passthrough,
            max_bytes=svc.settings.max_upload_bytes,
        )
        first = next(chunks)
    except ReadError as exc:
        raise read_error_to_api(exc) from None
    return chain([first], chunks)


def _split_body(stream: Any, fmt: str, passthrough: str | None) -> RecordRanges:
    """The upload cut into record ranges; its head is read at once, so a bad header or first record is refused
    before a job exists."""
    svc = services()
    try:
        return split_records(stream, fmt, target_bytes=svc.settings.chunk_bytes,
                             columns=list(svc.scorer.required_columns), passthrough=passthrough)
    except ReadError as exc:
        raise read_error_to_api(exc) from None


def _stage_upload(job_id: str, chunks: Iterator[Chunk]) -> tuple[int, int]:
    """Stage each parsed chunk as soon as it is read, so workers start scoring while the upload goes on."""
    jobs_service = services().jobs
    rows_total = chunks_total = 0
    for chunk in chunks:
        if not jobs_service.stage_chunk(job_id, chunks_total, chunk.table, chunk.errors):
            raise UploadStopped(job_id)
        rows_total += chunk.rows
        chunks_total += 1
        api_metrics().uploaded_rows.inc(chunk.rows)
    return rows_total, chunks_total


def _stage_ranges(job_id: str, body: RecordRanges) -> int:
    """Stage each range of the body as soon as it is cut (the workers parse it); returns how many."""
    jobs_service = services().jobs
    chunks_total = 0
    for data in body.ranges:
        if not jobs_service.stage_range(job_id, chunks_total, data, body.fmt):
            raise UploadStopped(job_id)
        chunks_total += 1
    return chunks_total


def _stage_parquet(job_id: str, stream: Any, passthrough: str | None) -> tuple[int, int]:
    """Keep a Parquet body whole in the store, check its schema (in its footer, at its end), and stage its row
    groups as chunks of about PREDICTQ_CHUNK_BYTES; returns (rows, chunks)."""
    svc = services()
    jobs_service = svc.jobs
    jobs_service.write_upload(job_id, iter(partial(stream.read, READ_BLOCK), b""))
    with jobs_service.blobs.fs.open_input_file(jobs_service.blobs.upload_path(job_id)) as source:
        parquet = open_parquet(source)
        check_parquet_schema(parquet, list(svc.scorer.required_columns), passthrough)
        chunks = group_chunks(parquet, svc.settings.chunk_bytes)
        meta = parquet.metadata
        sizes = [sum(meta.row_group(i).total_byte_size for i in range(c.first, c.last + 1)) for c in chunks]
    for index, (groups, size) in enumerate(zip(chunks, sizes, strict=True)):
        if not jobs_service.stage_row_groups(job_id, index, groups.text(), size, groups.rows):
            raise UploadStopped(job_id)
    return sum(c.rows for c in chunks), len(chunks)


def _check_room(declared: int | None) -> None:
    """507 before any job exists when the store cannot take the declared body (or one chunk) now."""
    svc = services()
    try:
        svc.jobs.blobs.ensure_room(declared or svc.settings.chunk_bytes)
    except InsufficientStorage as exc:
        raise ApiError(507, "insufficient_storage", f"no room for this upload: {exc}; no job was created",
                       {"free_bytes": exc.free, "needed_bytes": exc.needed, "reserve_bytes": exc.reserve}) from None


def incomplete_body(exc: IncompleteBody, job_id: str | None) -> ApiError:
    """The 400 for a body that did not arrive whole, naming the job it failed (if one was created)."""
    details: dict[str, Any] = {"bytes_received": exc.received, "bytes_expected": exc.expected}
    if job_id is not None:
        details["job_id"] = job_id
    log.warning("upload %s: %s", f"of job {job_id} failed" if job_id else "refused before a job existed",
                exc.describe())
    message = exc.describe() + (f"; job {job_id} failed and nothing of it was kept" if job_id else "")
    return ApiError(400, "incomplete_body", message, details)


def _naming_job(exc: ApiError, job_id: str) -> ApiError:
    """`exc` with the id of the job it failed, so a client is told which listed job it was."""
    exc.details = {**exc.details, "job_id": job_id}
    exc.message = f"{exc.message} (job {job_id} failed)"
    return exc


def _abort(job_id: str, exc: BaseException) -> ApiError | None:
    """Fail the job whose upload `exc` stopped, deleting what it staged; the error to answer, if the client
    should be told one."""
    jobs_service = services().jobs
    if isinstance(exc, IncompleteBody):
        jobs_service.abort_upload(job_id, "upload_incomplete", exc.describe(), bytes_received=exc.received,
                                  bytes_expected=exc.expected)
        return incomplete_body(exc, job_id)
    if isinstance(exc, ReadError | ApiError):
        log.warning("upload of job %s refused: %s", job_id, exc.code)
    if isinstance(exc, ReadError):
        jobs_service.abort_upload(job_id, exc.code, f"{exc.code}: {exc.message}")
        return _naming_job(read_error_to_api(exc), job_id)
    if isinstance(exc, ApiError):
        jobs_service.abort_upload(job_id, exc.code, f"{exc.code}: {exc.message}")
        return _naming_job(exc, job_id)
    # A bug or the process stopping: the half-staged job must not stay open either.
    jobs_service.abort_upload(job_id, "upload_failed", f"upload failed: {type(exc).__name__}")
    return None


def _check_digest(job_id: str, receipt: BodyReceipt, announced: dict[str, bytes]) -> None:
    """Fail the job with 400 digest_mismatch when the body is not the one the client hashed."""
    algorithm = digest_mismatch(receipt, announced)
    if algorithm is None:
        return
    expected = base64.b64encode(announced[algorithm]).decode()
    received = base64.b64encode(receipt.digests[algorithm]).decode()
    message = (f"the body's {algorithm} digest is :{received}: but Content-Digest announced :{expected}:; "
               f"job {job_id} failed and nothing of it was kept")
    log.warning("upload of job %s refused: digest_mismatch", job_id)
    services().jobs.abort_upload(job_id, "digest_mismatch", message, bytes_received=receipt.bytes_received)
    raise ApiError(400, "digest_mismatch", message, {
        "job_id": job_id, "algorithm": algorithm, "expected": expected, "received": received,
        "bytes_received": receipt.bytes_received,
    })


@bp.post("")
def submit_job() -> Response:
    """Create a job from a CSV / NDJSON / JSON-array body or multipart file; 202 with Location and the job.

    CSV and NDJSON bodies are only cut into record-aligned ranges here (the workers parse them); a JSON
    array is parsed here, chunk by chunk. The job is sealed only once the whole body arrived (its length as
    announced, a chunked body's last chunk, its Content-Digest if one was sent); any other ending fails it and
    deletes what it staged. With an Idempotency-Key, a repeat of a completed submit answers 200 with its job
    (see api.idempotency).
    """
    svc = services()
    check_backpressure(svc.jobs.queued_rows(), svc.settings.max_queued_rows,
                       svc.jobs.queued_bytes(), svc.settings.max_queued_bytes)
    _check_room(request.content_length)
    passthrough = _passthrough()
    callback_url = requested_callback(request, svc.settings, g.tenant)
    upload = open_upload(request, svc.settings.max_upload_bytes)
    claim = idempotency.claim_for(request, svc.redis, svc.settings, g.tenant, (upload.fmt, passthrough, callback_url))
    if isinstance(claim, idempotency.Held):
        return _replay(claim, upload)
    stream = HeartbeatStream(upload.rows)
    # The C heap left free by earlier /predict bodies (tens of MB, kept warm for the next one) goes back to
    # the system first, so that a long upload's resident size is its own working set.
    release_free_heap()
    with claim.released_on_error():
        try:
            body = _split_body(stream, upload.fmt, passthrough) if upload.fmt in RANGE_FORMATS else None
            chunks = _read_chunks(stream, upload.fmt, passthrough) if upload.fmt == "json" else iter(())
        except IncompleteBody as exc:
            raise incomplete_body(exc, None) from None
        scorer = svc.scorer
        job = svc.jobs.create(g.tenant, fmt=upload.fmt, passthrough=passthrough,
                              header=body.header if body else b"",
                              model={"version": scorer.version, "sha256": scorer.sha256},
                              request_id=current_request_id(), callback_url=callback_url)
        job_id = job["id"]
        claim.attach(job_id)
        stream.beat = partial(_beat, job_id, claim)
        try:
            if body is not None:
                rows_total, chunks_total = None, _stage_ranges(job_id, body)
            elif upload.fmt == "parquet":
                rows_total, chunks_total = _stage_parquet(job_id, stream, passthrough)
            else:
                rows_total, chunks_total = _stage_upload(job_id, chunks)
            receipt = upload.body.finish()
        except UploadStopped:
            closed = present(svc.jobs.get(g.tenant, job_id))
            raise ApiError(409, "job_closed", f"job {job_id} was {closed['state']} during its upload",
                           {"job_id": job_id, "job": closed}) from None
        except InsufficientStorage as exc:
            failed = present(svc.jobs.fail_for_storage(job_id, str(exc)))
            raise ApiError(507, "insufficient_storage",
                           f"job {job_id} failed: the store ran out of room during its upload ({exc}); "
                           "its data was deleted", {"job_id": job_id, "job": failed}) from None
        except BaseException as exc:
            answer = _abort(job_id, exc)
            if answer is None:
                raise
            raise answer from None
        _check_digest(job_id, receipt, upload.announced)
        svc.jobs.seal(job_id, rows_total, chunks_total, bytes_received=receipt.bytes_received,
                      sha256=receipt.sha256)
    claim.bind(job_id, receipt.sha256)
    result = present(svc.jobs.get(g.tenant, job_id))
    return json_response(result, 202, {"Location": result["links"]["self"]})


def _replay(held: idempotency.Held, upload: Upload) -> Response:
    """A repeat of a completed submit: its body is read whole (only hashed) and compared with the first's."""
    try:
        receipt = upload.body.finish()
    except IncompleteBody as exc:
        raise incomplete_body(exc, None) from None
    return idempotency.replay(held, receipt.sha256, lambda job_id: present(services().jobs.get(g.tenant, job_id)))


def _beat(job_id: str, claim: idempotency.Claim | idempotency.NoClaim) -> None:
    """The upload is alive: refresh its job's heartbeat and its idempotency reservation."""
    services().jobs.touch_upload(job_id)
    claim.refresh()


def _cursor() -> str | None:
    """The `cursor` query parameter, refused unless it has the shape of a `next_cursor` the API handed out."""
    cursor = request.args.get("cursor") or None
    if cursor is not None and not CURSOR_RE.fullmatch(cursor):
        raise ApiError(400, "invalid_parameter", "cursor must be a next_cursor value from a previous page",
                       {"cursor": cursor[:100]})
    return cursor


@bp.get("")
def list_jobs() -> Response:
    """The caller's jobs, newest first, `limit` per page, continued with `cursor`."""
    raw_limit = request.args.get("limit", str(DEFAULT_PAGE))
    if not PAGE_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ApiError(400, "invalid_parameter", f"limit must be an integer from 1 to {MAX_PAGE}", {"limit": raw_limit})
    items, next_cursor = services().jobs.list(g.tenant, int(raw_limit), _cursor())
    return json_response({"items": [present(job) for job in items], "next_cursor": next_cursor})


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """One job's state, counts, progress, rate, ETA, model and links."""
    return json_response(present(services().jobs.get(g.tenant, job_id_or_404(job_id))))


@bp.delete("/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel: chunks not started are skipped; results already scored stay readable.

    With `?purge=true`, every file of the job is deleted now as well, and the answer says what was deleted.
    """
    purge = request.args.get("purge", "false")
    if purge not in ("true", "false"):
        raise ApiError(400, "invalid_parameter", "purge must be true or false", {"purge": purge[:20]})
    if purge == "false":
        return json_response(present(services().jobs.cancel(g.tenant, job_id_or_404(job_id))))
    job, deleted = services().jobs.purge(g.tenant, job_id_or_404(job_id))
    return json_response({**present(job), "purged": {"files": deleted.files, "bytes": deleted.bytes}})


def negotiate_format() -> str:
    """The download format: `?format=` first, then the Accept header, else JSON."""
    fmt = request.args.get("format")
    if fmt is not None:
        if fmt not in RESULT_MEDIA_TYPES:
            raise ApiError(400, "invalid_parameter", "format must be json, ndjson, csv or parquet", {"format": fmt})
        return fmt
    best = request.accept_mimetypes.best_match(list(ACCEPT_FORMATS), default="application/json")
    return ACCEPT_FORMATS.get(best or "application/json", "json")


def _primed(tables: Iterable[Any]) -> Iterator[Any]:
    """Start `tables` now: the job service checks the job's owner and expiry on the first step, so a foreign,
    missing or expired job is answered 404/410 before any byte is streamed."""
    iterator = iter(tables)
    first = next(iterator, None)
    return iterator if first is None else chain([first], iterator)


def _download(job_id: str, kind: str, source: Callable[[str, str], Iterable[Any]]) -> Response:
    """Stream a job's result or error tables in the negotiated format."""
    fmt = negotiate_format()
    tables = _primed(source(g.tenant, job_id_or_404(job_id)))

    def body() -> Iterator[bytes]:
        try:
            # The next blocks are fetched and encoded on threads while this one is sent (all release the GIL).
            yield from read_ahead(iter_encoded(tables, fmt, threads=ENCODE_THREADS))
        except Exception:
            # Headers are already sent: all that can be done is log and cut the stream short.
            log.exception("streaming %s of job %s failed", kind, job_id)
            raise

    response = Response(stream_with_context(body()), content_type=RESULT_MEDIA_TYPES[fmt])
    if fmt in ("csv", "parquet"):
        response.headers["Content-Disposition"] = f'attachment; filename="{job_id}-{kind}.{fmt}"'
    return response


@bp.get("/<job_id>/results")
def get_results(job_id: str) -> Response:
    """Scored rows in input order (so far, while the job runs), each with its input `row`."""
    return _download(job_id, "results", services().jobs.iter_result_tables)


@bp.get("/<job_id>/errors")
def get_errors(job_id: str) -> Response:
    """Every row error: row, column, message."""
    return _download(job_id, "errors", services().jobs.iter_error_tables)
