"""The API's response shapes: the job, job page and error objects as types, the job object as clients see it
(`present`), and the OpenAPI document's component schemas.

Why TypedDicts turned into JSON Schema by pydantic: the code builds plain dicts and serializes them with
orjson (fast, and the job logic below the API needs no schema library), and the same TypedDicts annotate the
code that builds them (`jobs.view.render_job`, `present`, `api.errors.error_response`). pydantic's
`TypeAdapter` reads those types (field docstrings become descriptions) only when the document is built, so
a field added to the job object is documented at once and the document cannot drift. Constants (the job id
grammar, the states, the row limit, the histogram's bins) are taken from the code that enforces them.
Bodies that are not built from a type (records, predictions, the summary's figures) keep written schemas
here, from the same constants.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import url_for
from typing_extensions import TypedDict

from api.errors import Error
from core.settings import Settings
from core.states import JobState
from jobs.keys import JOB_ID_MAX_LENGTH, JOB_ID_PATTERN
from jobs.summary import BINS
from jobs.view import JobObject
from model.schema import REQUIRED_COLUMNS

REF = "#/components/schemas/{model}"
# The required-columns rule, the same for /predict and every job upload format.
SCHEMA_RULE = (
    "The CSV header, or the first JSON/NDJSON record (for /predict: the first object), is the schema check: it must "
    f"name every required column ({' '.join(REQUIRED_COLUMNS)}), else 400 missing_columns naming the absent ones. "
    "After it, a key absent from a record is a missing value (mean-imputed), as null or \"\" are."
)


class JobLinks(TypedDict):
    """Where to read the job, its results, its row errors and its summary."""

    self: str
    results: str
    errors: str
    summary: str


class Job(JobObject):
    """A job as clients see it: its state, counts, progress, rate, ETA and model, and links."""

    links: JobLinks


class JobPage(TypedDict):
    """A page of the caller's jobs, newest first; next_cursor continues it (null on the last page)."""

    items: list[Job]
    next_cursor: str | None


Job.__pydantic_config__ = {"use_attribute_docstrings": True}  # type: ignore[attr-defined]


def present(job: JobObject) -> Job:
    """The job object as clients see it: the store's fields plus links to itself, its results and errors."""
    job_id = job["id"]
    links: JobLinks = {
        "self": url_for("jobs.get_job", job_id=job_id),
        "results": url_for("jobs.get_results", job_id=job_id),
        "errors": url_for("jobs.get_errors", job_id=job_id),
        "summary": url_for("summary.get_summary", job_id=job_id),
    }
    return {**job, "links": links}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema `name`."""
    return {"$ref": REF.format(model=name)}


def job_id_schema() -> dict[str, Any]:
    """A job id as jobs.keys makes them (anything else is answered 404)."""
    return {"type": "string", "pattern": f"^{JOB_ID_PATTERN}$", "maxLength": JOB_ID_MAX_LENGTH}


@functools.cache
def generated_schemas() -> dict[str, Any]:
    """Schemas of Job, JobPage and Error, and of every type and enum they use, by type name."""
    from pydantic import TypeAdapter
    from pydantic.json_schema import GenerateJsonSchema

    class Untitled(GenerateJsonSchema):
        """pydantic's schemas without a title on every field (the field's name says it)."""

        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

    adapters = [(shape, "serialization", TypeAdapter(shape)) for shape in (Job, JobPage, Error)]
    _, top = TypeAdapter.json_schemas(adapters, ref_template=REF, schema_generator=Untitled)  # type: ignore[arg-type]
    schemas: dict[str, Any] = top["$defs"]
    schemas["Job"]["properties"]["id"] = job_id_schema()
    return schemas


def _error_envelope(code: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """The one error shape {"error": {"code", "message", "details"}} with the given code and details schemas."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {"code": code, "message": {"type": "string"}, "details": details},
            }
        },
    }


def component_schemas(settings: Settings) -> dict[str, Any]:
    """Every component schema of the document."""
    record = {
        "type": "object",
        "description": "One input row: the raw columns x0..x99. The model reads "
        f"{', '.join(REQUIRED_COLUMNS)}; other keys are accepted and ignored. Values are numbers, numeric text "
        "('$1,234.50', '62.5%', '1e3') or, for x5/x31/x81, a known level; null is missing. A row whose values "
        "cannot be used (an unknown level, Infinity, a number past float64) is a row error naming the column, never "
        f"a failure of the whole request. {SCHEMA_RULE}",
        "properties": {c: {"description": "number, numeric text, level, or null"} for c in REQUIRED_COLUMNS},
        "required": list(REQUIRED_COLUMNS),
        "additionalProperties": True,
    }
    prediction = {
        "type": "object",
        "description": "Keys sorted: business_outcome, phat, then the 25 model inputs.",
        "required": ["business_outcome", "phat"],
        "properties": {"business_outcome": {"type": "integer", "enum": [0, 1]}, "phat": {"type": "number"}},
        "additionalProperties": True,
    }
    row_error = {
        **_error_envelope(
            {"const": "invalid_row"},
            {
                "type": "object",
                "required": ["row", "column"],
                "properties": {"row": {"type": "integer"}, "column": {"type": ["string", "null"]}},
            },
        ),
        "description": "An element of a /predict array that could not be scored, answered in place in the one "
        "error shape: details.row is its 0-based index in the array, details.column the column at fault (null "
        "when the element is not an object).",
        "additionalProperties": False,
    }
    return {
        **generated_schemas(),
        "JobSummary": _summary_schema(),
        "Record": record,
        "Prediction": prediction,
        "RowError": row_error,
        "PredictArray": {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.max_sync_rows,
            "description": f"Records. {SCHEMA_RULE} An element that is not a usable Record is answered in place "
            "with a RowError.",
            "items": {},
        },
    }


def _summary_schema() -> dict[str, Any]:
    """The job summary (jobs.summary.assemble): scores, outcome share, inputs beside training, drift."""
    number, count = {"type": ["number", "null"]}, {"type": "integer", "minimum": 0}
    counts = {"type": "object", "additionalProperties": count}
    level = {"type": "object", "required": ["level", "count", "share", "training_share"],
             "properties": {"level": {"type": "string"}, "count": count, "share": number, "training_share": number}}
    column = {
        "type": "object",
        "required": ["column", "kind", "missing", "missing_rate", "training_missing_rate"],
        "properties": {
            "column": {"type": "string"}, "kind": {"type": "string", "enum": ["numeric", "categorical"]},
            "missing": count, "missing_rate": number, "training_missing_rate": number,
            "mean": number, "sd": number, "training_mean": number, "training_sd": number,
            "mean_shift": {**number, "description": "(mean - training_mean) / training_sd"},
            "levels": {"type": "array", "items": level},
        },
    }
    warning = {"type": "object", "required": ["kind", "message"], "properties": {
        "kind": {"type": "string", "enum": ["missing_rate", "mean_shift", "level_share", "outcome_share",
                                            "rows_failed"]},
        "column": {"type": ["string", "null"]}, "value": {"type": "number"}, "training": {"type": "number"},
        "threshold": {"type": "number"}, "message": {"type": "string"}}}
    return {
        "type": "object",
        "description": "Figures over the rows scored by the chunks committed so far (every chunk once the job is "
        "closed). Counts are exact; means and standard deviations (population, over observed values) are merged "
        "from per-chunk float64 sums.",
        "required": ["job_id", "state", "rows_scored", "phat_histogram", "business_outcome_1", "inputs",
                     "rows_failed", "drift"],
        "properties": {
            "job_id": job_id_schema(),
            "state": ref(JobState.__name__),
            "rows_scored": count,
            "phat_histogram": {
                "type": "object", "required": ["edges", "counts"],
                "description": f"{BINS} equal bins over [0, 1]: bin i holds edges[i] <= phat < edges[i+1] (the last "
                "also phat = 1); the counts sum to rows_scored.",
                "properties": {"edges": {"type": "array", "items": {"type": "number"}, "minItems": BINS + 1,
                                         "maxItems": BINS + 1},
                               "counts": {"type": "array", "items": count, "minItems": BINS, "maxItems": BINS}},
            },
            "business_outcome_1": {
                "type": "object", "required": ["count", "share", "cutoff", "training_share"],
                "properties": {"count": count, "share": number, "cutoff": {"type": "number"},
                               "training_share": {"type": "number"}},
            },
            "inputs": {"type": "array", "items": column},
            "rows_failed": {"type": "object", "required": ["total", "by_code", "by_column"], "properties": {
                "total": count, "by_code": counts, "by_column": counts}},
            "drift": {"type": "array", "items": warning},
        },
        "additionalProperties": True,
    }
