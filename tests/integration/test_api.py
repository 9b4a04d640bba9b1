"""The API against real Redis and real Celery workers: /predict limits, job round trips in every format,
results equal to in-process scoring in input order, tenants, shared rate limits and backpressure."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from flask.testing import FlaskClient

from api.app import create_app
from core.settings import Settings
from model.synth import iter_synth

KEY_A, KEY_B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(
        worker_settings, chunk_rows=1_500, chunk_bytes=1_000_000, auth_mode="required",
        api_keys="key-a:acme,key-b:globex"
    )


def make_client(settings: Settings) -> FlaskClient:
    """An app on the test's Redis (jobs, and rate limits too) served in-process."""
    return create_app(settings, {"TESTING": True}).test_client()


@pytest.fixture
def client(worker_settings: Settings) -> FlaskClient:
    return make_client(worker_settings)


@pytest.fixture(scope="module")
def synth_rows() -> pd.DataFrame:
    """4,000 synthetic rows with a client id column."""
    frame = next(iter_synth(4_000, seed=7, chunk_rows=4_000)).to_pandas()
    frame.insert(0, "cid", [f"id-{i}" for i in range(len(frame))])
    return frame


def encode(frame: pd.DataFrame, fmt: str) -> tuple[bytes, str]:
    """The rows as a request body and its Content-Type (multipart wraps the CSV)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode(), "text/csv"
    if fmt == "ndjson":
        return frame.to_json(orient="records", lines=True).encode(), "application/x-ndjson"
    if fmt == "json":
        return frame.to_json(orient="records").encode(), "application/json"
    body, _ = encode(frame, "csv")
    boundary = "predictq-test-boundary"
    wrapped = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="rows.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return wrapped, f"multipart/form-data; boundary={boundary}"


def wait_final(client: FlaskClient, job: dict[str, Any], headers: dict[str, str], timeout: float = 180) -> dict:
    """Poll the job over HTTP until it is finished."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        polled = client.get(job["links"]["self"], headers=headers).get_json()
        if polled["state"] in FINAL:
            return polled
        assert time.monotonic() < deadline, polled
        time.sleep(0.2)


def test_predict_one_array_and_the_row_limit(client: FlaskClient, synth_rows: pd.DataFrame, scorer: Any) -> None:
    records = orjson.loads(synth_rows.to_json(orient="records"))
    one = client.post("/predict", json=records[0], headers=KEY_A)
    assert one.status_code == 200
    assert one.get_json() == scorer.score_records(records[:1]).to_records()[0]
    many = (records * 3)[:10_000]
    answered = client.post("/predict", data=orjson.dumps(many), content_type="application/json", headers=KEY_A)
    assert answered.status_code == 200
    assert answered.get_json() == scorer.score_records(many).to_records()
    refused = client.post("/predict", data=orjson.dumps([*many, records[0]]), content_type="application/json",
                          headers=KEY_A)
    assert refused.status_code == 413
    assert "/v1/jobs" in refused.get_json()["error"]["message"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "multipart"])
def test_job_round_trip_equals_in_process_scoring(
    fmt: str, client: FlaskClient, celery_workers: Any, synth_rows: pd.DataFrame, scorer: Any
) -> None:
    celery_workers.start()
    body, content_type = encode(synth_rows, fmt)
    response = client.post("/v1/jobs?id_column=cid", data=body, headers={**KEY_A, "Content-Type": content_type})
    assert response.status_code == 202, response.get_json()
    job = wait_final(client, response.get_json(), KEY_A)
    assert (job["state"], job["outcome"], job["rows_total"]) == ("succeeded", "all_rows_scored", 4_000)
    assert job["chunks_total"] >= 3

    expected = scorer.score_frame(pa.Table.from_pandas(synth_rows.drop(columns="cid"))).to_records(include_row=True)
    as_json = client.get(job["links"]["results"], headers=KEY_A).get_json()
    assert [r.pop("cid") for r in as_json] == synth_rows["cid"].tolist()
    assert as_json == expected
    as_csv = client.get(job["links"]["results"] + "?format=csv", headers=KEY_A).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert [int(r["row"]) for r in rows] == list(range(4_000))
    assert [float(r["phat"]) for r in rows] == [r["phat"] for r in expected]
    assert client.get(job["links"]["errors"], headers=KEY_A).get_json() == []


def test_tenants_never_see_each_others_jobs(client: FlaskClient, synth_rows: pd.DataFrame) -> None:
    body, content_type = encode(synth_rows.head(10), "csv")
    job = client.post("/v1/jobs", data=body, headers={**KEY_A, "Content-Type": content_type}).get_json()
    for suffix in ("", "/results", "/errors"):
        assert client.get(f"/v1/jobs/{job['id']}{suffix}", headers=KEY_B).status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}", headers=KEY_B).status_code == 404
    assert client.get("/v1/jobs", headers=KEY_B).get_json()["items"] == []
    assert [j["id"] for j in client.get("/v1/jobs", headers=KEY_A).get_json()["items"]] == [job["id"]]
    assert client.get(f"/v1/jobs/{job['id']}", headers=KEY_A).get_json()["state"] == "queued"


def test_rate_limits_are_shared_by_every_api_process(worker_settings: Settings, synth_rows: pd.DataFrame) -> None:
    settings = dataclasses.replace(worker_settings, rate_limit_poll="3/minute")
    first, second = make_client(settings), make_client(settings)
    statuses = [c.get("/v1/jobs", headers=KEY_A).status_code for c in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]
    assert second.get("/v1/jobs", headers=KEY_B).status_code == 200


def test_backpressure_counts_real_queued_bytes(worker_settings: Settings, synth_rows: pd.DataFrame) -> None:
    client = make_client(dataclasses.replace(worker_settings, max_queued_bytes=1_000_000))
    body, content_type = encode(synth_rows.head(1_200), "csv")
    headers = {**KEY_A, "Content-Type": content_type}
    assert client.post("/v1/jobs", data=body, headers=headers).status_code == 202
    refused = client.post("/v1/jobs", data=body, headers=headers)
    assert refused.status_code == 503
    staged = len(body) - len(body.split(b"\n", 1)[0]) - 1  # the body after its header line
    assert refused.get_json()["error"]["details"]["queued_bytes"] == staged
    assert int(refused.headers["Retry-After"]) > 0


@pytest.mark.reference
def test_real_rows_through_the_api(
    reference_dir: Path, client: FlaskClient, celery_workers: Any, scorer: Any
) -> None:
    body = (reference_dir / "exercise_26_test_rows_0_999.json").read_bytes()
    celery_workers.start()
    response = client.post("/v1/jobs", data=body, headers={**KEY_A, "Content-Type": "application/json"})
    assert response.status_code == 202
    job = wait_final(client, response.get_json(), KEY_A)
    assert (job["state"], job["rows_total"]) == ("succeeded", 1000)
    reference = pd.read_csv(reference_dir / "reference_phat_0_999.csv").set_index("row")["phat"]
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    got = pd.Series({r["row"]: r["phat"] for r in results})
    assert (got - reference.loc[got.index]).abs().max() <= 1e-12
    inline = client.post("/predict", data=body, content_type="application/json", headers=KEY_A).get_json()
    scored = [r for r in inline if "error" not in r]
    assert [r["phat"] for r in scored] == [r["phat"] for r in results]
