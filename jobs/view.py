"""The job object clients see (GET /v1/jobs/{id}, lists, webhooks): its shape as types, built from the
stored job hash by `render_job`.

The types are plain TypedDicts: the job logic builds and serializes dicts (orjson), and the API's OpenAPI
document generates its schemas from these same types (api.schemas, with pydantic), so the document cannot
drift from what is built here. A field's docstring is its description there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

import annotated_types as at
from typing_extensions import TypedDict

from core.states import OPEN_STATES, WEBHOOK_WAITING, JobOutcome, JobState, WebhookState

Count = Annotated[int, at.Ge(0)]
Timestamp = str  # ISO 8601 UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z


class UploadInfo(TypedDict):
    """What arrived of the body: its size and sha256 (hex) once complete; the bytes received and expected
    when it was cut short; results_deleted when nothing of the job was kept."""

    complete: bool
    bytes_received: Count | None
    bytes_expected: Count | None
    sha256: str | None
    results_deleted: bool


class WebhookInfo(TypedDict):
    """Delivery of the job's callback (absent without one)."""

    url: str
    state: WebhookState | Literal["waiting"]
    """waiting while the job is open, then pending, sending, retrying, delivered, failed or refused."""
    attempts: Count
    last_status: int | None
    """The HTTP status of the last attempt."""
    last_error: str | None


class ModelInfo(TypedDict):
    """The model the job is scored with."""

    version: str
    sha256: str


class JobObject(TypedDict):
    """A job: its state, counts, progress, rate, ETA and model. `rows_done` counts rows with a final outcome
    (scored or failed), `rows_failed` those of them that failed. Until the upload is sealed,
    `chunks_total`/`bytes_total` count what was staged so far and `upload_complete` is false; `rows_total`
    counts the records parsed so far (exact once the job succeeded)."""

    id: str
    state: JobState
    outcome: JobOutcome | None
    """Once succeeded: whether every row scored or some rows failed (see the errors link)."""
    reason: str | None
    """Why a job failed or was cancelled."""
    reason_code: str | None
    """Stable code of the reason: cancelled, purged, upload_incomplete (the body did not arrive whole),
    digest_mismatch (not the body the client hashed), upload_mismatch, stuck, too_large, insufficient_storage,
    chunk_unreadable, or the code of the read error that stopped the upload or that a worker found in a range
    of it."""
    format: str | None
    """The upload's format."""
    passthrough: str | None
    """The id_column carried through to every result row."""
    upload_complete: bool
    upload: UploadInfo
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    expires_at: Timestamp | None
    purged_at: Timestamp | None
    """When the job's data was deleted on request."""
    rows_total: Count
    rows_done: Count
    rows_failed: Count
    chunks_total: Count
    chunks_done: Count
    bytes_total: Count
    """Staged input bytes (so far, while uploading)."""
    bytes_done: Count
    """Staged input bytes of the committed chunks."""
    progress: Annotated[float, at.Interval(ge=0, le=1)]
    rows_per_second: float | None
    eta_seconds: float | None
    model: ModelInfo | None
    request_id: str | None
    """The id of the request that submitted the job."""
    webhook: WebhookInfo | None


# Field docstrings become the descriptions of the generated schemas (read by pydantic in api.schemas).
for _shape in (UploadInfo, WebhookInfo, ModelInfo, JobObject):
    _shape.__pydantic_config__ = {"use_attribute_docstrings": True}  # type: ignore[attr-defined]


def iso_time(epoch: str | float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, or None."""
    if epoch in (None, ""):
        return None
    stamp = datetime.fromtimestamp(float(epoch), tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def int_field(fields: Mapping[str, str], name: str) -> int:
    return int(fields.get(name) or 0)


def _upload(f: Mapping[str, str], sealed: bool) -> UploadInfo:
    """What arrived of the job's body: its size and sha256 once complete, what was expected when it was cut."""
    return {
        "complete": sealed,
        "bytes_received": int(f["bytes_received"]) if f.get("bytes_received") else None,
        "bytes_expected": int(f["bytes_expected"]) if f.get("bytes_expected") else None,
        "sha256": f.get("sha256") or None,
        "results_deleted": bool(f.get("purged_at")),
    }


def render_webhook(f: Mapping[str, str]) -> WebhookInfo | None:
    """Delivery of the job's callback: `state` waiting (job still open) | pending | retrying | delivered |
    failed | refused, attempts made, the last HTTP status and error; None when the job has no callback."""
    url = f.get("callback_url")
    if not url:
        return None
    return {
        "url": url,
        "state": WebhookState(f["webhook_state"]) if f.get("webhook_state") else WEBHOOK_WAITING,
        "attempts": int_field(f, "webhook_attempts"),
        "last_status": int_field(f, "webhook_last_status") or None,
        "last_error": f.get("webhook_last_error") or None,
    }


def render_job(job_id: str, f: Mapping[str, str], now: float) -> JobObject:
    """The public job object built from its stored fields."""
    sealed = f.get("sealed") == "1"
    chunks_total = int_field(f, "chunks_total") if sealed else int_field(f, "chunks_staged")
    rows_failed = int_field(f, "rows_failed")
    rows_done = int_field(f, "rows_scored") + rows_failed
    # Records are counted as they are parsed: by the API for a JSON array, by the workers for CSV and NDJSON.
    rows_total = max(int_field(f, "rows_staged"), int_field(f, "rows_read"))
    bytes_total, bytes_done = int_field(f, "bytes_staged"), int_field(f, "bytes_done")
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
    model: ModelInfo | None = (
        {"version": f["model_version"], "sha256": f["model_sha256"]} if f.get("model_version") else None)
    return {
        "id": job_id,
        "state": JobState(state),
        "outcome": JobOutcome(f["outcome"]) if f.get("outcome") else None,
        "reason": f.get("reason") or None,
        "reason_code": f.get("reason_code") or None,
        "format": f.get("fmt") or None,
        "passthrough": f.get("passthrough") or None,
        "upload_complete": sealed,
        "upload": _upload(f, sealed),
        "created_at": iso_time(f.get("created_at")),
        "started_at": iso_time(f.get("started_at")),
        "finished_at": iso_time(f.get("finished_at")),
        "expires_at": iso_time(f.get("expires_at")),
        "purged_at": iso_time(f.get("purged_at")),
        "rows_total": rows_total,
        "rows_done": rows_done,
        "rows_failed": rows_failed,
        "chunks_total": chunks_total,
        "chunks_done": int_field(f, "chunks_done"),
        "bytes_total": bytes_total,
        "bytes_done": bytes_done,
        "progress": round(progress, 6),
        "rows_per_second": round(rate, 3) if rate else None,
        "eta_seconds": round(eta, 3) if eta is not None else None,
        "model": model,
        "request_id": f.get("request_id") or None,
        "webhook": render_webhook(f),
    }
