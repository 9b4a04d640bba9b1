"""X-Request-Id on every answer, in every error body, and on the log lines of the request."""

from __future__ import annotations

import logging

import pytest

from api.request_id import accepted_id
from core.logging_context import LogContextFilter, log_context


def test_every_answer_carries_a_fresh_id(client) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first.headers["X-Request-Id"]) == 32
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_a_sane_client_id_is_kept_and_named_in_errors(client) -> None:
    response = client.get("/v1/jobs/nope", headers={"X-Request-Id": "pipeline-7:step.3"})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "pipeline-7:step.3"
    assert response.get_json()["error"]["details"]["request_id"] == "pipeline-7:step.3"


@pytest.mark.parametrize("raw", ["", "a b", "x" * 129, "id\u00e9", "inject\r\nX-Evil: 1"])
def test_an_unsafe_client_id_is_replaced(raw: str) -> None:
    chosen = accepted_id(raw)
    assert chosen != raw and len(chosen) == 32


def test_authentication_and_routing_errors_carry_the_id(make_app) -> None:
    client = make_app(auth_mode="required", api_keys="k:acme").test_client()
    refused = client.get("/v1/jobs")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["details"]["request_id"] == refused.headers["X-Request-Id"]
    missing = client.get("/no/such/route")
    assert missing.get_json()["error"]["details"]["request_id"] == missing.headers["X-Request-Id"]


def test_log_lines_of_a_request_carry_its_id(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()

    @app.get("/noisy")
    def noisy() -> str:
        logging.getLogger("api.test").warning("something happened")
        return "ok"

    caplog.handler.addFilter(LogContextFilter())
    response = app.test_client().get("/noisy", headers={"X-Request-Id": "req-42"})
    assert response.status_code == 200
    record = next(r for r in caplog.records if r.getMessage() == "something happened")
    assert record.log_context == "request_id=req-42 "


def test_log_context_nests_and_resets() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with log_context(request_id="r1"), log_context(job_id="j1"):
        LogContextFilter().filter(record)
    assert record.log_context == "request_id=r1 job_id=j1 "
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    LogContextFilter().filter(outside)
    assert outside.log_context == ""
