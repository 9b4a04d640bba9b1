"""predictq.Client against a scripted HTTP server on loopback: typed errors, retries that honour Retry-After
(the client's sleep is recorded, not waited), one Idempotency-Key across a submit's retries, paging, and
score() keeping the frame's index."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import pytest
from flask import Flask, Response, request

import predictq
from predictq.client import Client
from predictq.errors import ApiError, BadRequest, ConnectionFailed, NotFound, RateLimited, Unavailable, Unprocessable
from predictq.localredis import free_port
from tests.support.http_server import serve_app


@dataclass
class Script:
    """Answers to give, per path, before the default one; every request seen."""

    answers: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def queue(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.answers.setdefault(path, []).append((status, body, headers or {}))


def error(code: str, message: str = "no", **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def build(script: Script) -> Flask:
    app = Flask(__name__)

    @app.route("/<path:path>", methods=["GET", "POST", "DELETE"])
    def any_path(path: str) -> Response:
        body = request.get_data()
        script.seen.append({"method": request.method, "path": "/" + path, "headers": dict(request.headers),
                            "args": dict(request.args), "body": body})
        queued = script.answers.get("/" + path)
        if queued:
            status, payload, headers = queued.pop(0)
        elif path == "predict":
            records = orjson.loads(body)
            status, headers = 200, {}
            payload = [{"phat": r["x"] / 10, "business_outcome": int(r["x"] > 5)} if r["x"] is not None else
                       error("invalid_row", "x is missing", row=i, column="x") for i, r in enumerate(records)]
        else:
            status, payload, headers = 200, {"id": "j1", "state": "queued"}, {}
        return Response(orjson.dumps(payload), status, {"X-Request-Id": "rid-1", **headers},
                        mimetype="application/json")

    return app


@pytest.fixture
def script() -> Iterator[Script]:
    state = Script()
    with serve_app(build(state)) as state.url:
        yield state


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def client(script: Script, slept: list[float]) -> Client:
    made = Client(script.url, "k", max_attempts=4, max_retry_seconds=60)
    made._sleep = slept.append
    return made


def test_the_package_exports_the_client_lazily() -> None:
    assert predictq.Client is Client
    with pytest.raises(AttributeError):
        predictq.Nope  # noqa: B018


def test_errors_are_typed_and_carry_what_the_server_said(client: Client, script: Script) -> None:
    script.queue("/v1/jobs/x", 404, error("job_not_found", "job not found", job_id="x"))
    with pytest.raises(NotFound) as missing:
        client.status("x")
    assert (missing.value.status, missing.value.code, missing.value.request_id) == (404, "job_not_found", "rid-1")
    assert missing.value.details["job_id"] == "x"
    assert "rid-1" in str(missing.value)
    script.queue("/predict", 400, error("missing_columns", "x5 missing", missing=["x5"]))
    with pytest.raises(BadRequest) as bad:
        client.predict([{"x": 1}])
    assert bad.value.details["missing"] == ["x5"]
    assert len(script.seen) == 2  # neither was retried


def test_503_and_429_are_retried_after_the_time_the_server_asks(client: Client, script: Script,
                                                                slept: list[float]) -> None:
    script.queue("/v1/jobs/j1", 503, error("overloaded"), {"Retry-After": "7"})
    script.queue("/v1/jobs/j1", 429, error("rate_limited"), {"Retry-After": "3"})
    assert client.status("j1")["state"] == "queued"
    assert slept == [7.0, 3.0]
    assert len(script.seen) == 3


def test_retries_stop_at_the_attempt_bound_and_the_time_budget(script: Script, slept: list[float]) -> None:
    bounded = Client(script.url, max_attempts=3, max_retry_seconds=60)
    bounded._sleep = slept.append
    for _ in range(3):
        script.queue("/v1/jobs/j1", 503, error("overloaded"), {"Retry-After": "1"})
    with pytest.raises(Unavailable) as exhausted:
        bounded.status("j1")
    assert (len(slept), exhausted.value.retry_after) == (2, 1.0)
    script.answers.clear()
    impatient = Client(script.url, max_attempts=5, max_retry_seconds=30)
    impatient._sleep = slept.append
    script.queue("/v1/jobs/j1", 429, error("rate_limited"), {"Retry-After": "60"})
    with pytest.raises(RateLimited):
        impatient.status("j1")  # waiting 60 s would pass the 30 s budget: raised at once
    assert len(slept) == 2


def test_a_refused_connection_is_retried_then_reported(slept: list[float]) -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", max_attempts=3)
    client._sleep = slept.append
    with pytest.raises(ConnectionFailed) as failed:
        client.status("j1")
    assert failed.value.status == 0 and failed.value.code == "unreachable"
    assert len(slept) == 2 and all(0 <= s <= 1.0 for s in slept)


def test_a_submit_keeps_one_idempotency_key_across_retries(client: Client, script: Script, tmp_path) -> None:
    path = tmp_path / "rows.ndjson"
    path.write_bytes(b'{"x": 1}\n' * 1000)
    script.queue("/v1/jobs", 503, error("overloaded"), {"Retry-After": "1"})
    script.queue("/v1/jobs", 409, error("idempotency_key_in_use"), {"Retry-After": "2"})
    job = client.submit(path, id_column="cid")
    assert job.id == "j1"
    posts = [r for r in script.seen if r["method"] == "POST"]
    keys = {r["headers"]["Idempotency-Key"] for r in posts}
    assert len(posts) == 3 and len(keys) == 1
    assert all(r["body"] == path.read_bytes() for r in posts)
    assert posts[0]["headers"]["Content-Type"] == "application/x-ndjson"
    assert posts[0]["args"] == {"id_column": "cid"}


def test_a_reused_key_is_not_retried(client: Client, script: Script, tmp_path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x\n1\n")
    script.queue("/v1/jobs", 422, error("idempotency_key_reused"))
    with pytest.raises(Unprocessable):
        client.submit(path, idempotency_key="mine")
    assert [r["headers"]["Idempotency-Key"] for r in script.seen] == ["mine"]


def test_a_dataframe_is_submitted_as_csv_without_its_index(client: Client, script: Script) -> None:
    frame = pd.DataFrame({"x": [1.5, None, 0.1 + 0.2]}, index=["a", "b", "c"])
    client.submit(frame)
    sent = script.seen[-1]
    assert sent["headers"]["Content-Type"] == "text/csv"
    assert sent["body"] == b'x\n1.5\n""\n0.30000000000000004\n'  # pandas quotes a lone empty cell


def test_jobs_iterates_every_page(client: Client, script: Script) -> None:
    script.queue("/v1/jobs", 200, {"items": [{"id": "a"}, {"id": "b"}], "next_cursor": "5:b"})
    script.queue("/v1/jobs", 200, {"items": [{"id": "c"}], "next_cursor": None})
    assert [job.id for job in client.jobs(page_size=2)] == ["a", "b", "c"]
    assert [r["args"] for r in script.seen] == [{"limit": "2"}, {"limit": "2", "cursor": "5:b"}]


def test_score_keeps_the_index_and_names_failed_rows(client: Client, script: Script) -> None:
    client.sync_rows = 2
    frame = pd.DataFrame({"x": [1.0, 9.0, None, 4.0, 8.0]}, index=[10, 20, 30, 40, 50])
    scored = client.score(frame)
    assert list(scored.index) == [10, 20, 30, 40, 50]
    assert scored["phat"].tolist()[:2] == [0.1, 0.9] and pd.isna(scored.loc[30, "phat"])
    assert scored["error"].tolist() == [None, None, "x is missing", None, None]
    assert len([r for r in script.seen if r["path"] == "/predict"]) == 3


def test_score_learns_a_lower_server_row_limit(client: Client, script: Script) -> None:
    script.queue("/predict", 413, error("too_many_rows", max_rows=2, rows=4))
    scored = client.score(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    assert scored["phat"].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert client.sync_rows == 2
    assert [len(orjson.loads(r["body"])) for r in script.seen] == [4, 2, 2]


def test_a_submit_sends_the_body_digest_and_checks_what_the_server_recorded(client: Client, script: Script,
                                                                             tmp_path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"x\n1\n2\n")
    digest = hashlib.sha256(path.read_bytes())
    script.queue("/v1/jobs", 202, {"id": "j1", "state": "queued",
                                   "upload": {"bytes_received": 6, "sha256": digest.hexdigest()}})
    assert client.submit(path).id == "j1"
    sent = script.seen[-1]["headers"]["Content-Digest"]
    assert sent == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    script.queue("/v1/jobs", 202, {"id": "j2", "state": "queued",
                                   "upload": {"bytes_received": 6, "sha256": "00" * 32}})
    with pytest.raises(ApiError) as mismatch:
        client.submit(path)
    assert mismatch.value.code == "upload_mismatch" and "j2" in mismatch.value.message
