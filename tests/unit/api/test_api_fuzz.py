"""Arbitrary bodies never make the API answer 5xx: random bytes and random JSON to /predict and /v1/jobs."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# Text may hold lone surrogates: json.dumps writes them as \ud800 escapes, which the API must refuse cleanly.
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
COLUMNS = st.sampled_from(["x5", "x12", "x31", "x44", "x53", "x56", "x58", "x62", "x81", "x91", "x0", "y", "row"])
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(COLUMNS, inner),
                           max_leaves=30)
UPLOAD_TYPES = ["text/csv", "application/x-ndjson", "application/json", "multipart/form-data; boundary=b"]
RECORDS = st.dictionaries(COLUMNS, SCALARS | st.lists(SCALARS, max_size=2), max_size=13)


@pytest.fixture
def client(make_app):
    return make_app({"RATELIMIT_ENABLED": False}, chunk_rows=3).test_client()


def assert_answered(response) -> None:
    assert response.status_code < 500, response.get_data()[:300]
    if response.status_code >= 400:
        assert set(response.get_json()["error"]) == {"code", "message", "details"}


@FUZZ
@given(body=st.binary(max_size=300))
def test_predict_random_bytes(client, body: bytes) -> None:
    assert_answered(client.post("/predict", data=body, content_type="application/json"))


@FUZZ
@given(value=JSON_VALUES | st.lists(RECORDS, min_size=1, max_size=5) | RECORDS)
def test_predict_random_json(client, value) -> None:
    # Python's encoder writes NaN / Infinity literals, which the API must read like the job readers do.
    assert_answered(client.post("/predict", data=json.dumps(value), content_type="application/json"))


@FUZZ
@given(body=st.binary(max_size=300), content_type=st.sampled_from(UPLOAD_TYPES))
def test_jobs_random_bytes(client, body: bytes, content_type: str) -> None:
    assert_answered(client.post("/v1/jobs", data=body, content_type=content_type))


@FUZZ
@given(records=st.lists(RECORDS, min_size=1, max_size=8), fmt=st.sampled_from(["ndjson", "json"]))
def test_jobs_random_records(client, score_queued, records, fmt: str) -> None:
    if fmt == "ndjson":
        body, content_type = "\n".join(json.dumps(r) for r in records), "application/x-ndjson"
    else:
        body, content_type = json.dumps(records), "application/json"
    response = client.post("/v1/jobs?id_column=x0", data=body, content_type=content_type)
    assert_answered(response)
    if response.status_code == 202:
        score_queued()
        job = client.get(response.headers["Location"]).get_json()
        assert job["rows_total"] == len(records)
        for link in ("results", "errors"):
            for fmt_name in ("json", "ndjson", "csv"):
                assert_answered(client.get(f"{job['links'][link]}?format={fmt_name}"))
