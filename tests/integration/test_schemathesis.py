"""Property-based tests of the API against its own OpenAPI document, in-process over WSGI on real Redis:
no 5xx, responses that match the document, and one tenant never reaching another tenant's job."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config._checks import NegativeDataRejectionConfig

from api.app import create_app
from core.settings import Settings

KEY_A, KEY_B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
FOREIGN_ROWS = b"x5,x12,x31,x44,x53,x56,x58,x62,x81,x91\nmonday,$1.00,asia,1,2,3,4,5,July,6\n"
# A row's validity depends on value formats the document cannot express (money text, known levels), so a
# schema-valid single /predict object may rightly be answered 400; every other default check runs.
EXCLUDED_CHECKS = ("positive_data_acceptance",)
EXAMPLES = 25


@pytest.fixture
def api_app(redis_url: str) -> Flask:
    """The app on the session's Redis with two tenants and limits high enough not to interfere."""
    app_settings = dataclasses.replace(
        Settings(),
        redis_url=redis_url,
        queue_name=f"predictq-fuzz-{uuid.uuid4().hex[:8]}",
        auth_mode="required",
        api_keys="key-a:acme,key-b:globex",
        rate_limit_submit="100000/minute",
        rate_limit_poll="100000/minute",
        rate_limit_predict="100000/minute",
    ).validated()
    return create_app(app_settings, {"TESTING": True})


@pytest.fixture
def foreign_job(api_app: Flask) -> dict[str, Any]:
    """A job of tenant "globex" that the fuzzed requests, all made as "acme", must never reach."""
    response = api_app.test_client().post(
        "/v1/jobs", data=FOREIGN_ROWS, headers={**KEY_B, "Content-Type": "text/csv"}
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()


OPERATIONS = [
    ("POST", "/predict"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/results"), ("GET", "/v1/jobs/{job_id}/errors"),
    ("GET", "/v1/jobs/{job_id}/summary"), ("GET", "/v1/model"),
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/"),
]  # schemathesis leaves out the document's own path, /openapi.json


def excluded_checks() -> list[Any]:
    """The check functions named in EXCLUDED_CHECKS."""
    from schemathesis.specs.openapi import checks

    return [getattr(checks, name) for name in EXCLUDED_CHECKS]


def never_shows_a_foreign_job(foreign_id: str) -> Any:
    """A check: no response to tenant "acme" mentions the foreign job's id unless acme named it itself."""

    def check(ctx: Any, response: Any, case: Any) -> None:
        asked = foreign_id in str(case.path_parameters or {}) or foreign_id in str(case.query or {})
        if not asked:
            assert foreign_id not in response.text, f"{case.operation.label} revealed another tenant's job"
        elif response.status_code < 500:
            assert response.status_code == 404, f"{case.operation.label} answered {response.status_code}"

    return check


def test_the_document_lists_every_operation(api_app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api_app)
    found = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)


# Negative data only where there is an input to get wrong (the ops routes take none).
CASES = [(m, p, mode) for m, p in OPERATIONS for mode in GenerationMode if mode.value == "positive" or (p != "/"
         and not p.endswith(("z", "metrics", "docs", "model")))]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_api_conforms_to_its_document(
    api_app: Flask, foreign_job: dict[str, Any], method: str, path: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api_app)
    # Too many rows for /predict (a negative case past maxItems) is rightly refused with 413, not 400.
    rejection = schema.config.checks_config_for(phase=None).negative_data_rejection
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig.from_dict(
        {"expected-statuses": [*rejection.expected_statuses, "413"]}
    )
    operation = schema[path][method]
    isolation = never_shows_a_foreign_job(foreign_job["id"])
    excluded = excluded_checks()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        # Generated credentials would only be refused (see the auth unit tests): every case runs as acme.
        for name in ("Authorization", "X-API-Key"):
            (case.headers or {}).pop(name, None)
        case.call_and_validate(headers=KEY_A, additional_checks=[isolation], excluded_checks=excluded)
        if "job_id" in (case.path_parameters or {}):
            # The same request aimed at the other tenant's job: 404, and nothing of the job.
            case.path_parameters["job_id"] = foreign_job["id"]
            case.headers = {}  # only acme's key: a generated Authorization header would take precedence
            response = case.call(headers=KEY_A)
            assert response.status_code in (400, 404), (case.operation.label, response.status_code, response.text)
            assert "phat" not in response.text and "x5" not in response.text

    run()
