"""Idempotency-Key on POST /v1/jobs (fakeredis): replays, reuse with another body, keys per tenant, keys in
use, and uploads that fail releasing their key."""

from __future__ import annotations

import io

import pytest

from api import idempotency
from jobs.service import JobService
from tests.unit.api.bodies import KEY_A, KEY_B, to_ndjson


@pytest.fixture
def app(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme,kb:globex", chunk_rows=50)


def submit(client, body: bytes, key: str | None = "k-1", auth=KEY_A, query: str = ""):
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/jobs{query}", data=body, headers=headers)


def job_ids(client, auth=KEY_A) -> list[str]:
    return [job["id"] for job in client.get("/v1/jobs?limit=100", headers=auth).get_json()["items"]]


def test_a_repeat_returns_the_first_job_and_says_so(app, make_rows) -> None:
    client = app.test_client()
    body = to_ndjson(make_rows(120))
    first = submit(client, body)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    again = submit(client, body)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert job_ids(client) == [first.get_json()["id"]]


def test_the_same_key_with_another_body_or_options_is_422(app, make_rows) -> None:
    client = app.test_client()
    rows = make_rows(60)
    first = submit(client, to_ndjson(rows))
    assert first.status_code == 202
    for body, query in ((to_ndjson(rows[:-1]), ""), (to_ndjson(rows), "?id_column=cid")):
        reused = submit(client, body, query=query)
        assert reused.status_code == 422
        error = reused.get_json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["details"]["job_id"] == first.get_json()["id"]
    assert len(job_ids(client)) == 1


def test_keys_belong_to_one_tenant(app, make_rows) -> None:
    client = app.test_client()
    body = to_ndjson(make_rows(10))
    a, b = submit(client, body, auth=KEY_A), submit(client, body, auth=KEY_B)
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.get_json()["id"] != b.get_json()["id"]


def test_a_key_in_use_is_409_with_retry_after(app, make_rows, fake_redis) -> None:
    client = app.test_client()
    settings = app.extensions["predictq"].settings
    holder = idempotency.claim(fake_redis, settings.key_prefix, "acme", "busy", "x", 60)
    assert isinstance(holder, idempotency.Claim)
    refused = submit(client, to_ndjson(make_rows(10)), key="busy")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "idempotency_key_in_use"
    assert int(refused.headers["Retry-After"]) >= 1
    assert job_ids(client) == []


def test_a_failed_upload_releases_its_key(app, make_rows) -> None:
    client = app.test_client()
    rows = make_rows(20_000)  # about 3 MB: the body breaks off after its job was created
    whole = to_ndjson(rows)
    failed = client.post("/v1/jobs", input_stream=io.BytesIO(whole[: len(whole) // 2]),
                         headers={**KEY_A, "Content-Type": "application/x-ndjson", "Idempotency-Key": "k-1"},
                         environ_overrides={"CONTENT_LENGTH": str(len(whole))})
    assert failed.status_code == 400
    assert failed.get_json()["error"]["details"]["job_id"]
    retried = submit(client, to_ndjson(rows))
    assert retried.status_code == 202
    jobs = {job["id"]: job["state"] for job in client.get("/v1/jobs", headers=KEY_A).get_json()["items"]}
    assert sorted(jobs.values()) == ["failed", "queued"]
    assert jobs[retried.get_json()["id"]] == "queued"


def test_a_body_refused_before_any_job_leaves_the_key_free(app, make_rows) -> None:
    client = app.test_client()
    assert submit(client, b'{"x5": 1}\n').status_code == 400  # missing columns: no job
    assert submit(client, to_ndjson(make_rows(5))).status_code == 202


@pytest.mark.parametrize("key", ["", "has space", "k" * 256, "caf\u00e9"])
def test_a_malformed_key_is_400(app, make_rows, key: str) -> None:
    response = submit(app.test_client(), to_ndjson(make_rows(3)), key=key)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"


def test_the_binding_expires_with_the_job(app, make_rows, fake_redis) -> None:
    client = app.test_client()
    job_id = submit(client, to_ndjson(make_rows(3))).get_json()["id"]
    settings = app.extensions["predictq"].settings
    record = idempotency.record_key(settings.key_prefix, "acme", "k-1")
    jobs: JobService = app.extensions["predictq"].jobs
    assert fake_redis.expiretime(record) == int(float(jobs.store.fields(job_id)["expires_at"]))
