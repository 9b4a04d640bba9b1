"""A job is sealed only when its whole body arrived: counted, hashed, checked against Content-Digest; any other
ending fails it, names it to the client, and keeps nothing of it. Errors never echo more than a few KB."""

from __future__ import annotations

import base64
import csv
import hashlib
import io

import orjson
import pytest

from api.errors import ApiError
from api.uploads import IncompleteBody, LimitedStream, content_digests
from tests.unit.api.bodies import KEY_A, submit, to_csv


class Failing(io.RawIOBase):
    """Hands out `data`, then raises `exc` as a server's input stream does when the connection breaks."""

    def __init__(self, data: bytes, exc: BaseException) -> None:
        self._data = io.BytesIO(data)
        self._exc = exc

    def read(self, n: int = -1) -> bytes:
        block = self._data.read(n)
        if not block:
            raise self._exc
        return block


@pytest.fixture
def app(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme,kb:globex", chunk_rows=5_000)


@pytest.fixture
def client(app):
    return app.test_client()


def sha256_header(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def post_cut(client, sent: bytes, announced: int):
    """A CSV upload whose Content-Length announces more than is sent."""
    return client.post("/v1/jobs", input_stream=io.BytesIO(sent), headers={**KEY_A, "Content-Type": "text/csv"},
                       environ_overrides={"CONTENT_LENGTH": str(announced)})


def listed(client) -> list[dict]:
    return orjson.loads(client.get("/v1/jobs", headers=KEY_A).data)["items"]


def test_a_body_shorter_than_its_content_length_is_incomplete() -> None:
    stream = LimitedStream(io.BytesIO(b"abcdef"), 100, expected=10, algorithms=("sha-256",))
    assert stream.read(4) == b"abcd"
    assert stream.read(4) == b"ef"
    with pytest.raises(IncompleteBody) as cut:
        stream.read(4)
    assert (cut.value.received, cut.value.expected) == (6, 10)
    assert "after 6 bytes of the 10 announced by Content-Length" in cut.value.describe()


@pytest.mark.parametrize("exc", [ConnectionResetError(), TimeoutError(), OSError("no more data")])
def test_a_broken_connection_is_incomplete_never_an_end(exc: BaseException) -> None:
    stream = LimitedStream(Failing(b"x" * 10, exc), 100, expected=None)
    assert stream.read(10) == b"x" * 10
    with pytest.raises(IncompleteBody) as cut:
        stream.read(10)
    assert (cut.value.received, cut.value.expected) == (10, None)


def test_gunicorn_framing_errors_are_incomplete_bodies() -> None:
    from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize, NoMoreData

    for exc, cause in [(InvalidChunkSize(b"zz"), "chunk size"), (ChunkMissingTerminator(b"ab"), "not terminated"),
                       (NoMoreData(), "before the last chunk")]:
        with pytest.raises(IncompleteBody, match=cause):
            LimitedStream(Failing(b"", exc), 100).read(10)


def test_a_complete_body_is_counted_and_hashed_to_its_end() -> None:
    body = b"x5,x12\n" * 1000
    stream = LimitedStream(io.BytesIO(body), len(body), expected=len(body), algorithms=("sha-256", "sha-512"))
    stream.read(100)
    receipt = stream.finish()  # reads what the row reader left
    assert receipt.bytes_received == len(body)
    assert receipt.sha256 == hashlib.sha256(body).hexdigest()
    assert receipt.digests["sha-512"] == hashlib.sha512(body).digest()


@pytest.mark.parametrize(("header", "problem"), [
    ("sha-256=abc", "list of algorithm"),
    ("sha-256=:!!!:", "list of algorithm"),
    ("sha-256=:abc:", "not valid base64"),
    ("md5=:AAAA:", "names no algorithm we check"),
])
def test_a_content_digest_we_cannot_check_is_refused(header: str, problem: str) -> None:
    with pytest.raises(ApiError, match=problem) as refused:
        content_digests(header)
    assert (refused.value.status, refused.value.code) == (400, "invalid_header")


def test_a_content_digest_keeps_the_algorithms_we_check() -> None:
    assert content_digests("md5=:AAAA:, sha-256=:AAAA:") == {"sha-256": b"\0\0\0"}
    assert content_digests(None) == {}


def test_a_short_body_fails_its_job_names_it_and_keeps_nothing(client, make_rows, score_queued, fake_redis) -> None:
    body = to_csv(make_rows(60_000))  # several read blocks: the job exists when the body breaks off
    cut = body[: len(body) // 2]
    response = post_cut(client, cut, len(body))
    assert response.status_code == 400, response.data
    error = response.get_json()["error"]
    assert error["code"] == "incomplete_body"
    job_id = error["details"]["job_id"]
    assert error["details"]["bytes_expected"] == len(body) and error["details"]["bytes_received"] <= len(cut)
    assert job_id in error["message"]
    job = client.get(f"/v1/jobs/{job_id}", headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"]) == ("failed", "upload_incomplete")
    assert job["upload"]["complete"] is False and job["upload"]["results_deleted"] is True
    score_queued()  # chunks enqueued before the cut find their job closed
    assert client.get(f"/v1/jobs/{job_id}/results?format=ndjson", headers=KEY_A).data == b""
    assert not [k for k in fake_redis.keys(f"*{job_id}:in:*")], "staged chunks must be deleted at once"
    assert [j["state"] for j in listed(client)] == ["failed"]


def test_a_body_cut_inside_its_first_chunk_creates_no_job(client, make_rows) -> None:
    body = to_csv(make_rows(3))
    response = post_cut(client, body[:-20], len(body))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "incomplete_body" and "job_id" not in error["details"]
    assert listed(client) == []


def test_a_matching_content_digest_seals_the_job_with_its_size_and_sha256(client, make_rows, score_queued) -> None:
    body = to_csv(make_rows(10))
    response = submit(client, body, "text/csv", headers={**KEY_A, "Content-Digest": sha256_header(body)})
    assert response.status_code == 202, response.data
    job = response.get_json()
    assert job["upload"] == {"complete": True, "bytes_received": len(body), "bytes_expected": None,
                             "sha256": hashlib.sha256(body).hexdigest(), "results_deleted": False}
    score_queued()
    assert client.get(job["links"]["self"], headers=KEY_A).get_json()["state"] == "succeeded"


def test_a_content_digest_mismatch_fails_the_job_and_keeps_nothing(client, make_rows, score_queued) -> None:
    body = to_csv(make_rows(10))
    other = body.replace(b"c9", b"c8")
    response = submit(client, body, "text/csv", headers={**KEY_A, "Content-Digest": sha256_header(other)})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "digest_mismatch" and error["details"]["algorithm"] == "sha-256"
    job_id = error["details"]["job_id"]
    score_queued()
    job = client.get(f"/v1/jobs/{job_id}", headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"], job["upload"]["results_deleted"]) == ("failed", "digest_mismatch", True)
    assert job["upload"]["bytes_received"] == len(body)


def test_an_error_after_the_job_was_created_names_it(client, make_rows) -> None:
    rows = make_rows(20_000)  # several read blocks: the job exists when the bad bytes arrive
    body = orjson.dumps(rows)[:-1] + b',{"x5": "\xff\xfe not utf-8"}]'
    response = submit(client, body, "application/json")  # (a JSON array is parsed by the API)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "not_utf8"
    job_id = error["details"]["job_id"]
    assert job_id in error["message"]
    job = client.get(f"/v1/jobs/{job_id}", headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"]) == ("failed", "not_utf8")


def test_an_error_in_a_later_range_fails_the_job_when_a_worker_reads_it(client, make_rows, score_queued) -> None:
    body = to_csv(make_rows(60_000)) + b"\xff\xfe not utf-8\n"  # CSV past its head is read by the workers
    response = submit(client, body, "text/csv")
    assert response.status_code == 202
    score_queued()
    job = client.get(response.headers["Location"], headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"]) == ("failed", "not_utf8")
    assert job["reason"].startswith("not_utf8: the body is not valid UTF-8")


def test_a_huge_header_is_not_echoed_back(client) -> None:
    names = ",".join(f"col_{'y' * 2000}_{i % 400}" for i in range(800))
    body = f"x5,x12,x31,x44,x53,x56,x58,x62,x81,x91,{names}\n".encode()
    assert len(body) > 900_000
    response = submit(client, body + b"1,2,3,4,5,6,7,8,9,10\n", "text/csv")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "duplicate_columns"
    assert len(response.data) < 8 * 1024


def test_a_bom_is_accepted_on_predict_as_on_uploads(client, good_row) -> None:
    plain = client.post("/predict", data=orjson.dumps(good_row), content_type="application/json", headers=KEY_A)
    with_bom = client.post("/predict", data=b"\xef\xbb\xbf" + orjson.dumps(good_row), content_type="application/json",
                           headers=KEY_A)
    assert plain.status_code == with_bom.status_code == 200, with_bom.data
    assert with_bom.get_json() == plain.get_json()


def encoded(rows: list[dict], fmt: str) -> tuple[bytes, str]:
    """`rows` as a body of `fmt` and its Content-Type."""
    if fmt == "csv":
        return to_csv(rows), "text/csv"
    if fmt == "ndjson":
        return b"".join(orjson.dumps(r) + b"\n" for r in rows), "application/x-ndjson"
    return orjson.dumps(rows), "application/json"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
@pytest.mark.parametrize("position", [0, 3, 9])
def test_a_boolean_is_a_row_error_in_every_record_of_an_upload(client, make_rows, score_queued, fmt, position):
    rows = make_rows(10)
    rows[position]["x44"] = True
    body, ctype = encoded(rows, fmt)
    job = submit(client, body, ctype).get_json()
    score_queued()
    errors = orjson.loads(client.get(f"{job['links']['errors']}?format=json", headers=KEY_A).data)
    assert [(e["row"], e["column"]) for e in errors] == [(position, "x44")]
    assert client.get(job["links"]["self"], headers=KEY_A).get_json()["rows_failed"] == 1


@pytest.mark.parametrize("position", [0, 1])
def test_a_boolean_is_a_row_error_in_every_element_on_predict(client, make_rows, position):
    rows = make_rows(2)
    rows[position]["x44"] = False
    answer = client.post("/predict", data=orjson.dumps(rows), content_type="application/json", headers=KEY_A)
    assert answer.status_code == 200
    results = answer.get_json()
    assert results[position]["error"]["details"] == {"row": position, "column": "x44"}
    assert "phat" in results[1 - position]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_bom_is_accepted_in_every_upload_format(client, make_rows, score_queued, fmt):
    body, ctype = encoded(make_rows(5), fmt)
    job = submit(client, b"\xef\xbb\xbf" + body, ctype).get_json()
    score_queued()
    done = client.get(job["links"]["self"], headers=KEY_A).get_json()
    assert (done["state"], done["rows_done"], done["rows_failed"]) == ("succeeded", 5, 0)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_formula_like_id_column_name_is_defused_in_csv_results(client, make_rows, score_queued, fmt):
    name = '=HYPERLINK("http://evil.example")'
    rows = [{**{k: v for k, v in r.items() if k != "cid"}, name: r["cid"]} for r in make_rows(3)]
    body, ctype = encoded(rows, fmt)
    response = client.post("/v1/jobs", query_string={"id_column": name}, data=body,
                           headers={**KEY_A, "Content-Type": ctype})
    assert response.status_code == 202, response.data
    job = response.get_json()
    score_queued()
    header = client.get(f"{job['links']['results']}?format=csv", headers=KEY_A).data.splitlines()[0].decode()
    assert not any(cell.startswith("=") for cell in next(csv.reader([header])))
    assert "'" + name in next(csv.reader([header]))
    as_json = orjson.loads(client.get(f"{job['links']['results']}?format=json", headers=KEY_A).data)
    assert [r[name] for r in as_json] == ["c0", "c1", "c2"]


def test_a_body_passing_the_limit_mid_upload_names_its_failed_job(make_app, make_rows) -> None:
    body = to_csv(make_rows(60_000))
    client = make_app(auth_mode="required", api_keys="ka:acme", chunk_rows=5_000,
                      max_upload_bytes=len(body) // 2).test_client()
    response = client.post("/v1/jobs", input_stream=io.BytesIO(body), headers={**KEY_A, "Content-Type": "text/csv"},
                           environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True})  # as chunked
    assert response.status_code == 413
    error = response.get_json()["error"]
    job = client.get(f"/v1/jobs/{error['details']['job_id']}", headers=KEY_A).get_json()
    assert (job["state"], job["reason_code"], job["upload"]["results_deleted"]) == ("failed", "too_large", True)
