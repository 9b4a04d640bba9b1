"""Parquet in and out: an uploaded file's row groups are the chunks, results come back as Parquet, and the
rows equal in-process scoring of the same records."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.formats import FORMATS
from tests.unit.api.bodies import KEY_A

MEDIA_TYPE = FORMATS["parquet"].media_type


@pytest.fixture
def app(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme", chunk_bytes=1)  # one chunk per row group


def parquet_body(rows: list[dict[str, Any]], row_group_size: int, **columns: pa.Array) -> bytes:
    table = pa.Table.from_pylist(rows)
    for name, array in columns.items():
        table = table.set_column(table.column_names.index(name), name, array)
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size)
    return out.getvalue()


def submit(client, body: bytes, query: str = ""):
    return client.post(f"/v1/jobs{query}", data=body, headers={**KEY_A, "Content-Type": MEDIA_TYPE})


def test_row_groups_are_chunks_and_results_equal_in_process_scoring(app, make_rows, scorer, score_queued, enqueued):
    rows = make_rows(10)
    rows[3]["x5"] = "someday"  # a scoring row error keeps its global row number
    client = app.test_client()
    response = submit(client, parquet_body(rows, 4), "?id_column=cid")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert (job["format"], job["rows_total"], job["chunks_total"]) == ("parquet", 10, 3)  # counted from the footer
    assert len(enqueued) == 3
    score_queued()
    done = client.get(job["links"]["self"], headers=KEY_A).get_json()
    assert (done["state"], done["rows_done"], done["rows_failed"]) == ("succeeded", 10, 1)
    got = pq.read_table(io.BytesIO(client.get(job["links"]["results"] + "?format=parquet", headers=KEY_A).data))
    expected = [r for r in scorer.score_records(rows).to_records() if "error" not in r]
    assert got["row"].to_pylist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert got["phat"].to_pylist() == pytest.approx([r["phat"] for r in expected], rel=1e-12)
    assert got["cid"].to_pylist() == [f"c{i}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9)]
    errors = client.get(job["links"]["errors"], headers=KEY_A).get_json()
    assert [(e["row"], e["column"]) for e in errors] == [(3, "x5")]
    assert app.extensions["predictq"].jobs.blobs.staged_files(job["id"]) == []  # the upload went with the job


def test_integer_and_boolean_columns_are_typed_as_the_readers_type_them(app, make_rows, score_queued):
    rows = make_rows(4)
    body = parquet_body(rows, 4, x44=pa.array([1, 2, 3, 4], pa.int32()), x53=pa.array([True, False, None, True]),
                        cid=pa.array([7, 8, 9, 10], pa.int64()))
    client = app.test_client()
    job = submit(client, body, "?id_column=cid").get_json()
    score_queued()
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    errors = client.get(job["links"]["errors"], headers=KEY_A).get_json()
    assert [r["cid"] for r in results] == [9]  # ids stay integers; the only row without a boolean scores
    assert [(e["row"], e["column"]) for e in errors] == [(0, "x53"), (1, "x53"), (3, "x53")]
    assert {e["message"] for e in errors} == {"a boolean where a number or text belongs"}


@pytest.mark.parametrize(("body", "code"), [(b"PAR1 not really", "malformed"), (None, "missing_columns")])
def test_a_bad_parquet_body_fails_its_job_and_names_it(app, make_rows, body, code):
    if body is None:
        body = parquet_body([{k: v for k, v in row.items() if k != "x44"} for row in make_rows(3)], 3)
    client = app.test_client()
    response = submit(client, body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == code
    job = client.get(f"/v1/jobs/{error['details']['job_id']}", headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"]) == ("failed", code)
    assert app.extensions["predictq"].jobs.blobs.job_ids() == []  # nothing of it is kept


def test_a_multipart_parquet_file_is_read_by_its_extension(app, make_rows, score_queued):
    data = parquet_body(make_rows(5), 5)
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="rows.parquet"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b--\r\n")
    client = app.test_client()
    response = client.post("/v1/jobs", data=body, headers={**KEY_A, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 202, response.get_json()
    score_queued()
    table = pq.read_table(io.BytesIO(client.get(response.headers["Location"] + "/results",
                                                headers={**KEY_A, "Accept": MEDIA_TYPE}).data))
    assert table["row"].to_pylist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("name", "content_type", "fmt"), [
    ("x.parquet", MEDIA_TYPE, "parquet"), ("x.csv", "text/csv", "csv"), ("x.jsonl", "application/x-ndjson", "ndjson"),
])
def test_the_client_picks_upload_type_and_result_format_by_extension(name: str, content_type: str, fmt: str) -> None:
    from pathlib import Path

    from predictq.client import content_type_for, format_for

    assert (content_type_for(Path(name)), format_for(Path(name))) == (content_type, fmt)
