"""POST /predict: the synchronous call, one object or an array of up to max_sync_rows objects, scored inline."""

from __future__ import annotations

import codecs
import re
import time
from typing import Any

import orjson
from flask import Blueprint, Response, request

from api.errors import ApiError
from api.metrics import api_metrics
from api.responses import JSON_OPTIONS
from api.services import require_tenant, services
from api.uploads import check_charset, read_body
from model.readers import ReadError, check_columns
from model.readers.jsontext import loads
from model.scoring import ScoreResult

bp = Blueprint("predict", __name__)
bp.before_request(require_tenant)

# Generous per-row byte budget for the synchronous body (a 100-column row is about 2-3 KB of JSON).
PREDICT_BYTES_PER_ROW = 8 * 1024
# What orjson refuses and Python's parser reads: NaN/Infinity literals, big exponents, and integer literals too
# long for a float64 (309+ digits); any such value is a row error of its own row, never a malformed body.
NONFINITE = re.compile(rb"NaN|Infinity|[0-9][eE][+]?[0-9]{3}|[0-9]{309}")


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def parse_predict_body(body: bytes, max_rows: int) -> tuple[list[Any], bool]:
    """The records of a /predict body and whether it was a single object; 400/413 for bodies we refuse."""
    if body.startswith(codecs.BOM_UTF8):  # accepted here as in every upload format
        body = body[len(codecs.BOM_UTF8) :]
    if not body.strip():
        raise ApiError(400, "empty", "empty body: send one JSON object or an array of objects")
    try:
        # Python's parser is tried only for NaN / Infinity literals or numbers past float64 (as job uploads read
        # them: NaN is missing, the others become row errors)
        parsed = loads(body, lenient=NONFINITE.search)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "malformed", f"malformed JSON: {exc.msg}", {"line": exc.lineno, "column": exc.colno}
        ) from None
    if isinstance(parsed, dict):
        return [parsed], True
    if not isinstance(parsed, list):
        raise ApiError(400, "malformed", "the body must be a JSON object or an array of objects")
    if not parsed:
        raise ApiError(400, "empty", f"empty array: send between 1 and {max_rows} objects")
    if len(parsed) > max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"{len(parsed)} rows is more than the {max_rows} that /predict scores inline; "
            "submit large batches as a job with POST /v1/jobs",
            {"rows": len(parsed), "max_rows": max_rows, "jobs_url": "/v1/jobs"},
        )
    return parsed, False


def check_first_record(records: list[Any], required: tuple[str, ...]) -> None:
    """Refuse a body whose first object lacks required columns (as job uploads are refused); null is allowed."""
    first = next((record for record in records if type(record) is dict), None)
    if first is None:
        return
    try:
        check_columns(first, required, "the first record")
    except ReadError as exc:
        message = f"{exc.message} (send null for a missing value)"
        raise ApiError(400, "missing_columns", message, {"missing": exc.missing}) from None


def _row_error(row: int, column: str | None, message: str) -> dict[str, Any]:
    """An in-band row error in the API's one error shape, so clients parse every error the same way."""
    return {"error": {"code": "invalid_row", "message": message, "details": {"row": row, "column": column}}}


def results_in_order(result: ScoreResult, count: int) -> list[dict[str, Any]]:
    """One result per input element, in input order; a bad element becomes its error object, the others score."""
    scored = result.to_records()
    if not result.errors:
        return scored
    # Slow path, only when some rows failed: put results and errors back at their input positions.
    out: list[dict[str, Any] | None] = [None] * count
    for row, record in zip(result.rows.tolist(), scored, strict=True):
        out[row] = record
    for err in result.errors:
        if out[err.row] is None:
            out[err.row] = _row_error(err.row, err.column, err.message)
    return [entry if entry is not None else _row_error(i, None, "row was not scored") for i, entry in enumerate(out)]


@bp.post("/predict")
def predict() -> Response:
    """Score one object (answered with one object) or an array (answered with an array, in input order)."""
    if not _is_json(request.mimetype):
        got = request.headers.get("Content-Type")
        raise ApiError(
            415,
            "unsupported_media_type",
            f"/predict reads application/json, got {got!r}" if got else "missing Content-Type: send application/json",
            {"content_type": got},
        )
    check_charset(request.headers.get("Content-Type"))
    started = time.perf_counter()
    max_rows = services().settings.max_sync_rows
    records, single = parse_predict_body(read_body(request, max_rows * PREDICT_BYTES_PER_ROW), max_rows)
    check_first_record(records, services().scorer.required_columns)
    result = services().scorer.score_records(records)
    metrics = api_metrics()
    metrics.predict_rows.inc(len(records))
    if not single and not result.errors:
        # The usual batch: the JSON answer is written column-wise, without a dict per row.
        response = Response(result.to_json(), mimetype="application/json")
        # Freeing the parsed body (a dict per row) costs about a fifth of parsing it: the records are kept
        # until the answer has been sent, and freed then.
        response.call_on_close(records.clear)
        metrics.predict_latency.observe(time.perf_counter() - started)
        return response
    results = results_in_order(result, len(records))
    metrics.predict_latency.observe(time.perf_counter() - started)
    if single:
        first = results[0]
        if "error" in first and len(first) == 1:
            err = first["error"]
            raise ApiError(400, "invalid_row", err["message"], err["details"])
        return Response(orjson.dumps(first, option=JSON_OPTIONS), mimetype="application/json")
    return Response(orjson.dumps(results, option=JSON_OPTIONS), mimetype="application/json")
