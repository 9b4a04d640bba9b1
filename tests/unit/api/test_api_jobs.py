"""/v1/jobs on fakeredis with the real readers, writers, job service and in-process chunk scoring."""

from __future__ import annotations

import csv
import io
import re
import time

import orjson
import pyarrow.fs as pafs
import pytest

from jobs.keys import new_job_id
from tests.unit.api.bodies import KEY_A, KEY_B, multipart_body, submit, to_csv, to_ndjson


@pytest.fixture
def app(make_app):
    # JSON arrays are parsed in 4-row chunks; CSV and NDJSON bodies are cut into ranges of about 400 bytes.
    return make_app(auth_mode="required", api_keys="ka:acme,kb:globex", chunk_rows=4, chunk_bytes=400)


@pytest.fixture
def client(app):
    return app.test_client()


def job_bytes(body: bytes, fmt: str) -> bytes:
    """What the API stages of `body`: a CSV body without its header line, a multipart body's file part."""
    if fmt == "multipart":
        body = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    return body.split(b"\n", 1)[1] if fmt in ("csv", "multipart") else body


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "multipart"])
def test_round_trip_in_input_order_matches_in_process_scoring(client, make_rows, scorer, score_queued, enqueued, fmt):
    rows = make_rows(10)
    body, ctype = {
        "csv": (to_csv(rows), "text/csv"),
        "ndjson": (to_ndjson(rows), "application/x-ndjson"),
        "json": (orjson.dumps(rows), "application/json"),
        "multipart": multipart_body(to_csv(rows), "rows.csv", "text/csv"),
    }[fmt]
    response = submit(client, body, ctype, query="?id_column=cid")
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert (job["state"], job["upload_complete"]) == ("queued", True)
    if fmt != "json":  # (a JSON array's staged bytes are its parsed chunks)
        assert job["bytes_total"] == len(job_bytes(body, fmt))
    # A JSON array is counted as the API parses it; CSV and NDJSON records are counted by the workers.
    assert job["rows_total"] == (10 if fmt == "json" else 0)
    assert job["model"] == {"version": scorer.version, "sha256": scorer.sha256}
    assert len(enqueued) == job["chunks_total"] >= 2
    assert score_queued() == job["chunks_total"]

    polled = client.get(job["links"]["self"], headers=KEY_A).get_json()
    assert (polled["state"], polled["outcome"], polled["rows_done"], polled["rows_total"], polled["progress"]) == (
        "succeeded", "all_rows_scored", 10, 10, 1.0)
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    expected = scorer.score_records(rows).to_records()
    assert [r["row"] for r in results] == list(range(10))
    assert [r["cid"] for r in results] == [f"c{i}" for i in range(10)]
    assert [r["phat"] for r in results] == pytest.approx([e["phat"] for e in expected], rel=1e-12)
    assert list(results[0]) == sorted(results[0])


def test_results_formats_by_query_and_accept(client, make_rows, score_queued):
    job = submit(client, to_csv(make_rows(5)), "text/csv").get_json()
    score_queued()
    url = job["links"]["results"]
    as_csv = client.get(url + "?format=csv", headers=KEY_A)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["Content-Disposition"]
    assert len(as_csv.get_data(as_text=True).strip().splitlines()) == 6
    as_ndjson = client.get(url, headers={**KEY_A, "Accept": "application/x-ndjson"})
    assert as_ndjson.mimetype == "application/x-ndjson"
    assert [orjson.loads(line)["row"] for line in as_ndjson.get_data().splitlines()] == [0, 1, 2, 3, 4]
    assert client.get(url + "?format=xml", headers=KEY_A).status_code == 400


def test_row_errors_are_listed_and_other_rows_score(client, make_rows, score_queued):
    rows = make_rows(6)
    rows[2]["x5"] = "someday"
    body = to_ndjson(rows).replace(b'"c4"}', b'"c4"')  # line 5 is not JSON
    job = submit(client, body, "application/x-ndjson").get_json()
    score_queued()
    polled = client.get(job["links"]["self"], headers=KEY_A).get_json()
    assert (polled["outcome"], polled["rows_failed"]) == ("some_rows_failed", 2)
    errors = client.get(job["links"]["errors"], headers=KEY_A).get_json()
    assert [(e["row"], e["column"]) for e in errors] == [(2, "x5"), (4, None)]
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    assert [r["row"] for r in results] == [0, 1, 3, 5]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        (b"x5,x12\nmonday,1\n", "text/csv", 400, "missing_columns"),
        (b"", "text/csv", 400, "empty"),
        (b"x5;x12;x31;x44;x53;x56;x58;x62;x81;x91\n", "text/csv", 400, "delimiter"),
        (b'[{"x5": "monday"}]', "application/json", 400, "missing_columns"),
        (b'[{"x5": 1,', "application/json", 400, "malformed"),
        (b"[" * 3000, "application/json", 400, "too_deep"),
        (b"\xff\xfe\x00garbage\n", "application/x-ndjson", 400, "not_utf8"),
        (b"a,b\n", "text/plain", 415, "unsupported_media_type"),
        (b"a,b\n", "", 415, "unsupported_media_type"),
    ],
)
def test_bad_uploads_are_refused_before_a_job_exists(client, body, ctype, status, code):
    response = submit(client, body, ctype)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert client.get("/v1/jobs", headers=KEY_A).get_json()["items"] == []


def test_missing_columns_are_named(client):
    response = submit(client, b"x5,x12,x31\nmonday,1,asia\n", "text/csv")
    error = response.get_json()["error"]
    assert "x44" in error["message"]
    assert error["details"]["missing"] == ["x44", "x53", "x56", "x58", "x62", "x81", "x91"]


def test_a_failure_after_the_first_chunk_fails_the_job(client, make_rows):
    body = orjson.dumps(make_rows(9))[:-40] + b"]]]"
    response = submit(client, body, "application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed"
    [job] = client.get("/v1/jobs", headers=KEY_A).get_json()["items"]
    assert job["state"] == "failed"


def test_declared_oversize_is_413_at_once(make_app, make_rows):
    client = make_app(max_upload_bytes=100).test_client()
    response = client.post("/v1/jobs", data=to_csv(make_rows(5)), content_type="text/csv")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_streamed_oversize_is_413_and_the_job_fails(make_app):
    # Past the reader's first 1 MiB block, so the job exists and has chunks staged when the limit is passed.
    limit = 1_500_000
    app = make_app(max_upload_bytes=limit, chunk_bytes=100_000)
    body = to_ndjson([{"x5": "monday", "x12": 1, "x31": "asia", "x44": 1, "x53": 1, "x56": 1, "x58": 1, "x62": 1,
                       "x81": "July", "x91": 1}] * 20_000)
    assert len(body) > limit
    client = app.test_client()
    # No Content-Length (a chunked upload, as gunicorn presents it): the limit is found by counting while reading.
    response = client.post(
        "/v1/jobs",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    [job] = client.get("/v1/jobs").get_json()["items"]
    assert job["state"] == "failed"
    assert job["chunks_total"] > 0


@pytest.mark.parametrize(("limits", "fmt"), [({"max_queued_rows": 5}, "json"), ({"max_queued_bytes": 100}, "csv")])
def test_backpressure_refuses_new_jobs_with_retry_after(make_app, make_rows, limits, fmt):
    client = make_app(**limits).test_client()
    body, ctype = (orjson.dumps(make_rows(6)), "application/json") if fmt == "json" else (to_csv(make_rows(6)),
                                                                                         "text/csv")
    assert client.post("/v1/jobs", data=body, content_type=ctype).status_code == 202
    refused = client.post("/v1/jobs", data=body, content_type=ctype)
    assert refused.status_code == 503
    error = refused.get_json()["error"]
    assert error["code"] == "overloaded"
    assert refused.headers["Retry-After"].isdigit()
    if fmt == "csv":
        assert error["details"]["queued_bytes"] == len(job_bytes(body, "csv")) > error["details"]["max_queued_bytes"]


def test_another_tenants_job_is_404_everywhere(client, make_rows, score_queued):
    job = submit(client, to_csv(make_rows(3)), "text/csv").get_json()
    score_queued()
    for method, suffix in [("get", ""), ("get", "/results"), ("get", "/errors"), ("delete", "")]:
        response = getattr(client, method)(f"/v1/jobs/{job['id']}{suffix}", headers=KEY_B)
        assert response.status_code == 404
        assert "phat" not in response.get_data(as_text=True)
    assert client.get("/v1/jobs", headers=KEY_B).get_json()["items"] == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=KEY_A).status_code == 200


def test_cancel_keeps_scored_results(client, make_rows, enqueued, score_queued):
    job = submit(client, to_csv(make_rows(10)), "text/csv").get_json()
    first = enqueued[:1]
    enqueued[:] = first
    score_queued()
    cancelled = client.delete(job["links"]["self"], headers=KEY_A)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["state"] == "cancelled"
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    assert 0 < len(results) < 10
    assert [r["row"] for r in results] == list(range(len(results)))


def test_list_is_newest_first_and_paged(client, make_rows):
    ids = [submit(client, to_csv(make_rows(1)), "text/csv").get_json()["id"] for _ in range(3)]
    first = client.get("/v1/jobs?limit=2", headers=KEY_A).get_json()
    assert [j["id"] for j in first["items"]] == ids[::-1][:2]
    second = client.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=KEY_A).get_json()
    assert [j["id"] for j in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None
    for bad in ["0", "101", "x", "-1", "²", "1e2", "99999999999999999999"]:
        assert client.get(f"/v1/jobs?limit={bad}", headers=KEY_A).status_code == 400


@pytest.mark.parametrize("job_id", ["nope", "a" * 300, "zzzzzzzz-0123456789abcdef0123", "x'%20OR%201=1"])
def test_unknown_ids_are_404(client, job_id):
    response = client.get(f"/v1/jobs/{job_id}", headers=KEY_A)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "job_not_found"


def test_expired_job_is_410(client):
    response = client.get(f"/v1/jobs/{new_job_id(int(time.time()) - 10)}/results", headers=KEY_A)
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "job_expired"


@pytest.mark.parametrize("name", ["%0a", "row", "phat", "x44", "business_outcome", "x" * 129])
def test_invalid_id_column_is_400(client, make_rows, name):
    response = submit(client, to_csv(make_rows(1)), "text/csv", query=f"?id_column={name}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"


HEADER = b"x5,x12,x31,x44,x53,x56,x58,x62,x81,x91"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (HEADER + b"\n", 400, "empty"),
        (HEADER + b",x5\nmonday,1,asia,1,1,1,1,1,July,1,tuesday\n", 400, "duplicate_columns"),
        (HEADER.replace(b",", b"\t") + b"\nmonday\t1\tasia\t1\t1\t1\t1\t1\tJuly\t1\n", 400, "delimiter"),
        (HEADER + b"\n" + b"monday," + b"9" * 3_000_000 + b",asia,1,1,1,1,1,July,1\n", 413, "line_too_long"),
    ],
    ids=["header-only", "duplicate-columns", "tab-delimited", "3-MB-line"],
)
def test_hostile_csv_is_refused_clearly(client, body: bytes, status: int, code: str):
    response = submit(client, body, "text/csv")
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_broken_csv_rows_are_row_errors(client, score_queued):
    body = HEADER + b"\nmonday,1,asia,1,1,1,1,1,July,1\nmonday,1,asia\nmonday,NaN,asia,Infinity,1,1,1,1,July,1\n"
    job = submit(client, body, "text/csv").get_json()
    score_queued()
    errors = client.get(job["links"]["errors"], headers=KEY_A).get_json()
    assert [e["row"] for e in errors] == [1, 2]
    assert [r["row"] for r in client.get(job["links"]["results"], headers=KEY_A).get_json()] == [0]


def test_passthrough_formulas_are_neutralized_in_csv_only(client, score_queued):
    body = HEADER + b",cid\n" + b"".join(
        b"monday,1,asia,1,1,1,1,1,July,1," + cid + b"\n" for cid in (b"=1+2", b"+SUM(A1)", b"-3", b"@x", b"ok")
    )
    job = submit(client, body, "text/csv", query="?id_column=cid").get_json()
    score_queued()
    as_csv = client.get(job["links"]["results"] + "?format=csv", headers=KEY_A).get_data(as_text=True)
    cids = [row["cid"] for row in csv.DictReader(io.StringIO(as_csv))]
    assert cids == ["'=1+2", "'+SUM(A1)", "'-3", "'@x", "ok"]
    as_json = client.get(job["links"]["results"], headers=KEY_A).get_json()
    assert [r["cid"] for r in as_json] == ["=1+2", "+SUM(A1)", "-3", "@x", "ok"]


def test_cancel_during_upload_stops_reading_with_409(app, client, make_rows, fake_redis):
    body = to_ndjson(make_rows(4)) * 4_000  # a few 1 MiB reader blocks: the cancel lands between chunks
    jobs = app.extensions["predictq"].jobs
    original = jobs.stage_range

    def stage_then_cancel(job_id, index, data, fmt):
        staged = original(job_id, index, data, fmt)
        if index == 0:
            jobs.cancel("acme", job_id)
        return staged

    jobs.stage_range = stage_then_cancel
    response = submit(client, body, "application/x-ndjson")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["job"]["state"]) == ("job_closed", "cancelled")


@pytest.mark.parametrize("cursor", ["²:x", "1²:abc", "x", "12", ":abc", "12:", "12:a b", "12:abc\n", "1" * 21 + ":abc"])
def test_a_cursor_not_handed_out_by_the_api_is_400_naming_it(client, cursor):
    response = client.get("/v1/jobs", query_string={"cursor": cursor}, headers=KEY_A)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["details"]) == (
        "invalid_parameter", {"cursor": cursor, "request_id": response.headers["X-Request-Id"]})


def test_the_cursors_handed_out_match_the_documented_pattern(client, make_rows):
    for _ in range(2):
        submit(client, to_csv(make_rows(1)), "text/csv")
    cursor = client.get("/v1/jobs?limit=1", headers=KEY_A).get_json()["next_cursor"]
    listing = client.get("/openapi.json").get_json()["paths"]["/v1/jobs"]["get"]
    pattern = next(p["schema"]["pattern"] for p in listing["parameters"] if p["name"] == "cursor")
    assert re.fullmatch(pattern, cursor) and re.fullmatch(pattern, "")
    assert client.get("/v1/jobs", query_string={"cursor": cursor}, headers=KEY_A).status_code == 200


def test_a_well_formed_unknown_cursor_is_an_empty_page_and_an_empty_one_the_first(client, make_rows):
    response = client.get("/v1/jobs?cursor=1:zzz", headers=KEY_A)
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next_cursor": None}
    job_id = submit(client, to_csv(make_rows(1)), "text/csv").get_json()["id"]
    assert [j["id"] for j in client.get("/v1/jobs?cursor=", headers=KEY_A).get_json()["items"]] == [job_id]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_id_column_absent_from_the_header_or_first_record_is_refused(client, make_rows, fmt):
    rows = make_rows(3)
    body = {"csv": to_csv, "ndjson": to_ndjson, "json": orjson.dumps}[fmt](rows)
    ctype = {"csv": "text/csv", "ndjson": "application/x-ndjson", "json": "application/json"}[fmt]
    response = submit(client, body, ctype, query="?id_column=zz")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["missing"]) == ("missing_columns", ["zz"])
    assert "zz" in error["message"]
    assert client.get("/v1/jobs", headers=KEY_A).get_json()["items"] == []  # no job was created


def test_id_column_absent_from_later_records_is_null(client, make_rows, score_queued):
    rows = make_rows(3)
    del rows[2]["cid"]
    job = submit(client, to_ndjson(rows), "application/x-ndjson", query="?id_column=cid").get_json()
    score_queued()
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    assert [r["cid"] for r in results] == ["c0", "c1", None]


def test_large_integer_ids_come_back_exact(client, make_rows, score_queued):
    rows = [{**row, "cid": 9007199254740993 + i} for i, row in enumerate(make_rows(2))]
    job = submit(client, to_ndjson(rows), "application/x-ndjson", query="?id_column=cid").get_json()
    score_queued()
    raw = client.get(job["links"]["results"] + "?format=ndjson", headers=KEY_A).data
    assert [orjson.loads(line)["cid"] for line in raw.splitlines()] == [9007199254740993, 9007199254740994]
    assert b'"cid":9007199254740993,' in raw


@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", "utf-16", "windows-1252"])
def test_a_declared_charset_other_than_utf8_is_415_naming_it(client, make_rows, charset):
    response = submit(client, to_csv(make_rows(1)), f"text/csv; charset={charset}")
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["charset"]) == ("unsupported_media_type", charset)
    assert charset in error["message"]


@pytest.mark.parametrize(
    "ctype", ["text/csv", "text/csv; charset=utf-8", "text/csv; charset=UTF8", 'text/csv;charset="Utf-8"']
)
def test_utf8_or_no_charset_is_accepted(client, make_rows, ctype):
    assert submit(client, to_csv(make_rows(1)), ctype).status_code == 202


def test_a_multipart_file_part_with_another_charset_is_415(client, make_rows):
    body, ctype = multipart_body(to_csv(make_rows(1)), "rows.csv", "text/csv; charset=latin1")
    response = submit(client, body, ctype)
    assert response.status_code == 415
    assert response.get_json()["error"]["details"]["charset"] == "latin1"


def fill_store_after(jobs, room: int) -> None:
    """Make the job service's blob store report `room` bytes free, less what has been written to it since."""
    blobs = jobs.blobs

    def free_bytes() -> int:
        used = sum(i.size for i in blobs.fs.get_file_info(pafs.FileSelector(blobs.root, recursive=True))
                   if i.type == pafs.FileType.File)
        return room - used

    blobs.free_bytes = free_bytes


def test_a_store_that_fills_during_the_upload_gives_507_naming_the_failed_job_and_frees_it(make_app, make_rows):
    app = make_app(chunk_bytes=2_000)
    jobs = app.extensions["predictq"].jobs
    body = to_csv(make_rows(200))
    fill_store_after(jobs, room=len(body) // 2)
    response = app.test_client().post("/v1/jobs", input_stream=io.BytesIO(body),
                                      headers={"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
                                      environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 507
    error = response.get_json()["error"]
    job = error["details"]["job"]
    assert error["code"] == "insufficient_storage" and job["id"] in error["message"]
    assert job["state"] == "failed" and job["reason"].startswith("insufficient_storage: ")
    assert job["chunks_total"] > 0  # it was staging when the store filled
    assert jobs.blobs.job_ids() == []  # everything it wrote is gone at once


def test_a_body_declared_larger_than_the_free_space_is_507_before_a_job_exists(make_app, make_rows):
    app = make_app()
    jobs = app.extensions["predictq"].jobs
    fill_store_after(jobs, room=100)
    response = app.test_client().post("/v1/jobs", data=to_csv(make_rows(5)), content_type="text/csv")
    assert response.status_code == 507
    assert response.get_json()["error"]["details"]["needed_bytes"] == len(to_csv(make_rows(5)))
    assert app.test_client().get("/v1/jobs").get_json()["items"] == []


def test_purge_deletes_every_file_of_the_job_and_says_what_went(client, make_rows, score_queued, app):
    job = submit(client, to_csv(make_rows(10)), "text/csv").get_json()
    score_queued()
    blobs = app.extensions["predictq"].jobs.blobs
    files = blobs.output_files(job["id"])
    assert files
    response = client.delete(job["links"]["self"] + "?purge=true", headers=KEY_A)
    assert response.status_code == 200
    body = response.get_json()
    assert body["purged"]["files"] == len(files) and body["purged"]["bytes"] > 0
    assert body["state"] == "succeeded" and body["purged_at"]
    assert blobs.job_ids() == []
    assert body["upload"]["results_deleted"] is True
    assert client.get(job["links"]["results"], headers=KEY_A).get_json() == []
    again = client.delete(job["links"]["self"] + "?purge=true", headers=KEY_A).get_json()
    assert again["purged"] == {"files": 0, "bytes": 0}
    assert client.delete(job["links"]["self"] + "?purge=yes", headers=KEY_A).status_code == 400


def test_purging_an_open_job_cancels_it_first(client, make_rows, enqueued):
    job = submit(client, to_csv(make_rows(10)), "text/csv").get_json()
    body = client.delete(job["links"]["self"] + "?purge=true", headers=KEY_A).get_json()
    assert (body["state"], body["reason"]) == ("cancelled", "purged by the client")
    assert body["purged"]["files"] == len(enqueued) > 0
