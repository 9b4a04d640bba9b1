"""The OpenAPI 3.1 document of the HTTP contract: its paths, built from the settings that shape it (row and size
limits); the component schemas come from api.schemas."""

from __future__ import annotations

from typing import Any

from api.idempotency import KEY_RE
from api.jobs import CURSOR_RE, MAX_ID_COLUMN_CHARS, RESULT_MEDIA_TYPES
from api.schemas import SCHEMA_RULE, component_schemas, job_id_schema, ref
from core.formats import FORMATS
from core.settings import Settings
from core.version import VERSION as __version__
from jobs.webhooks import MAX_URL_LENGTH

JSON = "application/json"
PARQUET = FORMATS["parquet"].media_type


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}
AUTH_ERRORS = {
    "401": _error("Missing or invalid API key"),
    "429": _error("Rate limit for this key exceeded", RETRY_AFTER),
    "503": _error("No API keys configured, model or job store unavailable, or too much queued work", RETRY_AFTER),
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": job_id_schema()}
FORMAT = {
    "name": "format", "in": "query", "required": False,
    "description": "Download format; when absent the Accept header decides, else JSON.",
    "schema": {"type": "string", "enum": list(RESULT_MEDIA_TYPES)},
}


def _predict(settings: Settings) -> dict[str, Any]:
    return {
        "post": {
            "operationId": "predict",
            "summary": f"Score one row or up to {settings.max_sync_rows} rows inline",
            "description": "One object is answered with one object (400 if that row is invalid). An array is "
            "answered with an array in input order; an invalid element is answered in place with "
            '{"error": {"code": "invalid_row", "message", "details": {"row", "column"}}} while the others score. '
            f"{SCHEMA_RULE} More than {settings.max_sync_rows} rows: 413, use POST /v1/jobs.",
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"oneOf": [ref("Record"), ref("PredictArray")]}}},
            },
            "responses": {
                "200": {
                    "description": "Predictions",
                    "content": {JSON: {"schema": {"oneOf": [
                        ref("Prediction"),
                        {"type": "array", "items": {"anyOf": [ref("RowError"), ref("Prediction")]}},
                    ]}}},
                },
                "400": _error("Malformed JSON (with line and column), empty body, missing required columns in the "
                              "first object, or the single row is invalid"),
                "413": _error("Too many rows or too many bytes for the synchronous call"),
                "415": _error("Content-Type is not application/json, or declares a charset other than UTF-8"),
                **AUTH_ERRORS,
            },
        }
    }


def _jobs(settings: Settings) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    upload_content = {
        "text/csv": {"schema": binary},
        "application/x-ndjson": {"schema": binary},
        JSON: {"schema": {"description": "A JSON array of Records (or one Record); an element that is not a usable "
                          "Record becomes a row error of the job."}},
        PARQUET: {"schema": binary},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": binary}}},
    }
    job_response = {"content": {JSON: {"schema": ref("Job")}}}
    return {
        "post": {
            "operationId": "submitJob",
            "summary": "Submit a batch (CSV, NDJSON, JSON array, or a multipart file), streamed as it uploads",
            "description": f"Bodies up to {settings.max_upload_bytes} bytes, UTF-8 (a declared charset other than "
            f"UTF-8 is 415). {SCHEMA_RULE} The id_column, when given, must be named there too. Such a body is "
            "refused before any job exists.",
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [{
                "name": "Content-Digest", "in": "header", "required": False,
                "description": "RFC 9530 digest of the body, e.g. sha-256=:<base64>: (sha-256 or sha-512). The body "
                "received is checked against it before the job is sealed; every body's size and sha256 are recorded "
                "in the job's upload object in any case.",
                "schema": {"type": "string", "maxLength": 512},
            }, {
                "name": "id_column", "in": "query", "required": False,
                "description": "A client column carried through to every result row, for joining back "
                "(not `row` nor the name of a result column). The CSV header or first record must name it (400 "
                "missing_columns otherwise). Per chunk of rows it comes back as an integer when every id of the "
                "chunk is an integer within 64 bits, else as its exact text; never as a float.",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_COLUMN_CHARS},
            }, {
                "name": "callback_url", "in": "query", "required": False,
                "description": "An http(s) URL to POST the job to, signed per Standard Webhooks, when it succeeds, "
                "fails or is cancelled (default: the tenant's configured one). Its host must be allowed by the server.",
                "schema": {"type": "string", "maxLength": MAX_URL_LENGTH},
            }, {
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "A key of the client's choosing: a repeat of a completed submit with the same key and "
                "body answers 200 with the first job (Idempotent-Replayed: true), never a second job.",
                "schema": {"type": "string", "pattern": f"^{KEY_RE.pattern}$"},
            }],
            "requestBody": {"required": True, "content": upload_content},
            "responses": {
                "200": {
                    "description": "A repeat of an earlier submit with the same Idempotency-Key: its job",
                    "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}}},
                    **job_response,
                },
                "202": {
                    "description": "Accepted; Location names the job",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    **job_response,
                },
                "400": _error("Malformed body (with line and column), missing required or id_column columns, an "
                              "invalid id_column, callback_url, Idempotency-Key or Content-Digest header; "
                              "incomplete_body when the body ended before "
                              "its Content-Length or last chunk, or the connection broke; digest_mismatch when it is "
                              "not the body Content-Digest announced. An error raised after the job was created "
                              "names it in details.job_id: that job is failed and nothing of it is kept."),
                "409": _error("The job was cancelled or failed while its upload was still arriving, or another "
                              "request with this Idempotency-Key is still in progress", RETRY_AFTER),
                "422": _error("This Idempotency-Key was used with another body or other options"),
                "413": _error("Body larger than the upload limit (refused as soon as the limit is passed)"),
                "415": _error("Unsupported Content-Type, or a charset other than UTF-8"),
                "507": _error("insufficient_storage: the blob store has no room for the upload above its reserve; "
                              "when the job already existed it is failed, its data deleted, and details.job_id "
                              "names it"),
                **AUTH_ERRORS,
            },
        },
        "get": {
            "operationId": "listJobs",
            "summary": "The caller's jobs, newest first",
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "cursor", "in": "query", "required": False,
                 "description": "The next_cursor of the previous page, as given (empty: the first page; "
                 "anything else: 400).",
                 "schema": {"type": "string", "pattern": f"^({CURSOR_RE.pattern})?$"}},
            ],
            "responses": {
                "200": {"description": "A page of jobs", "content": {JSON: {"schema": ref("JobPage")}}},
                "400": _error("Invalid limit or cursor"),
                **AUTH_ERRORS,
            },
        },
    }


def _job_item() -> dict[str, Any]:
    common = {"404": _error("No such job for this caller"), "410": _error("The job expired"), **AUTH_ERRORS}
    job_response = {"content": {JSON: {"schema": ref("Job")}}}
    return {
        "get": {
            "operationId": "getJob", "summary": "A job's state and progress",
            "security": [{"bearer": []}, {"apiKey": []}], "parameters": [JOB_ID],
            "responses": {"200": {"description": "The job", **job_response}, **common},
        },
        "delete": {
            "operationId": "cancelJob",
            "summary": "Cancel a job; results already scored stay readable (purge=true deletes all of its data now)",
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [JOB_ID, {
                "name": "purge", "in": "query", "required": False,
                "description": "true: also delete every file of the job now (staged inputs, results, row errors); the "
                "answer adds purged {files, bytes}.",
                "schema": {"type": "string", "enum": ["true", "false"]},
            }],
            "responses": {"200": {"description": "The job after cancellation (and what a purge deleted)",
                                  **job_response},
                          "400": _error("purge is neither true nor false"), **common},
        },
    }


def _model() -> dict[str, Any]:
    number = {"type": ["number", "null"]}
    column = {"type": "object", "required": ["column", "kind"], "properties": {
        "column": {"type": "string"}, "kind": {"type": "string", "enum": ["numeric", "categorical"]},
        "levels": {"type": "array", "items": {"type": "string"}}, "training_missing_rate": number,
        "training_mean": number, "training_sd": number,
        "training_shares": {"type": ["object", "null"], "additionalProperties": {"type": "number"}}}}
    model = {"type": "object", "required": ["version", "sha256", "cutoff", "inputs"], "properties": {
        "version": {"type": "string"}, "sha256": {"type": "string"}, "cutoff": {"type": "number"},
        "training_outcome_share": {"type": "number"}, "inputs": {"type": "array", "items": column},
        "training_provenance": {"type": "object"}}}
    return {
        "get": {
            "operationId": "getModel",
            "summary": "The served model: version, cutoff, its inputs (with levels) and their training figures",
            "security": [{"bearer": []}, {"apiKey": []}],
            "responses": {"200": {"description": "The model", "content": {JSON: {"schema": model}}},
                          **AUTH_ERRORS},
        }
    }


def _job_summary() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "getJobSummary",
            "summary": "A job's phat histogram, outcome share, input data quality beside training, drift warnings",
            "security": [{"bearer": []}, {"apiKey": []}], "parameters": [JOB_ID],
            "responses": {
                "200": {"description": "The summary", "content": {JSON: {"schema": ref("JobSummary")}}},
                "404": _error("No such job for this caller"),
                "410": _error("The job expired"),
                **AUTH_ERRORS,
            },
        }
    }


def _download(operation_id: str, summary: str) -> dict[str, Any]:
    streamed = {"type": "string"}
    return {
        "get": {
            "operationId": operation_id, "summary": summary,
            "security": [{"bearer": []}, {"apiKey": []}], "parameters": [JOB_ID, FORMAT],
            "responses": {
                "200": {
                    "description": "Streamed rows, in input order, each with its 0-based input `row`",
                    "content": {
                        JSON: {"schema": {"type": "array", "items": {"type": "object"}}},
                        "application/x-ndjson": {"schema": streamed},
                        "text/csv": {"schema": streamed},
                        PARQUET: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "400": _error("Unknown format"),
                "404": _error("No such job for this caller"),
                "410": _error("The job expired"),
                **AUTH_ERRORS,
            },
        }
    }


def _ops() -> dict[str, Any]:
    status = {"type": "object", "properties": {"status": {"type": "string"}}, "additionalProperties": True}
    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive", "responses": {
            "200": {"description": "Alive", "content": {JSON: {"schema": status}}}}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Redis reachable and model loaded", "responses": {
            "200": {"description": "Ready", "content": {JSON: {"schema": status}}},
            "503": {"description": "Not ready", "content": {JSON: {"schema": status}}}}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "responses": {
            "200": {"description": "Exposition text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"operationId": "docs", "summary": "Browsable documentation (self-contained)", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/": {"get": {"operationId": "console", "summary": "The console for people (its files are under /console/; "
                      "the page asks for a key and sends it only in headers)", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The whole document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "predictq",
            "version": __version__,
            "description": "Scores rows with the approved GLM_Model_26: inline with POST /predict, or as queued "
            "jobs with POST /v1/jobs. Every error has the shape {\"error\": {\"code\", \"message\", \"details\"}}.",
        },
        "paths": {
            "/predict": _predict(settings),
            "/v1/jobs": _jobs(settings),
            "/v1/jobs/{job_id}": _job_item(),
            "/v1/jobs/{job_id}/results": _download("getResults", "Stream a job's scored rows"),
            "/v1/jobs/{job_id}/errors": _download("getErrors", "Stream a job's row errors (row, column, message)"),
            "/v1/jobs/{job_id}/summary": _job_summary(),
            "/v1/model": _model(),
            **_ops(),
        },
        "components": {
            "schemas": component_schemas(settings),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
