"""The API served by gunicorn (`api.wsgi:app` with predictq.gunicorn_conf) over real sockets: chunked uploads
streamed to real Celery workers, size limits enforced before the body is read, metrics summed over workers."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import requests

from core.settings import Settings
from model.synth import iter_synth
from tests.integration.servers import ApiServer, gunicorn_server

KEY = {"Authorization": "Bearer server-key"}
UPLOAD_LIMIT = 8_000_000


def server_env(settings: Settings) -> dict[str, str]:
    """The environment gunicorn and the app read their settings from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTQ_", "PROMETHEUS_"))}
    env |= {
        "REDIS_URL": settings.redis_url,
        "PREDICTQ_QUEUE": settings.queue_name,
        "PREDICTQ_CHUNK_ROWS": str(settings.chunk_rows),
        "PREDICTQ_CHUNK_BYTES": str(settings.chunk_bytes),
        "PREDICTQ_STORE_URI": settings.store_uri,
        "PREDICTQ_STORE_RESERVE_BYTES": str(settings.store_reserve_bytes),
        "PREDICTQ_API_KEYS": "server-key:acme",
        "PREDICTQ_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "PREDICTQ_API_WORKERS": "2",
        "PREDICTQ_API_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=2_000, chunk_bytes=4_000_000)


@pytest.fixture
def server(worker_settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """gunicorn on a free port until the test ends; ready once /readyz answers 200."""
    with gunicorn_server(server_env(worker_settings), tmp_path / "gunicorn.log") as running:
        yield running


@pytest.fixture(scope="module")
def ndjson_rows() -> list[bytes]:
    """5,000 synthetic rows as NDJSON lines."""
    table = next(iter_synth(5_000, seed=11, chunk_rows=5_000))
    return [orjson.dumps(record) + b"\n" for record in table.to_pylist()]


def test_chunked_upload_streams_to_workers(server: ApiServer, celery_workers: Any, ndjson_rows: list[bytes],
                                           scorer: Any) -> None:
    celery_workers.start()

    def body() -> Iterator[bytes]:
        for start in range(0, len(ndjson_rows), 500):
            yield b"".join(ndjson_rows[start : start + 500])

    # A generator body goes out with Transfer-Encoding: chunked and no Content-Length.
    response = requests.post(f"{server.url}/v1/jobs", data=body(), timeout=60,
                             headers={**KEY, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    job_url = server.url + response.headers["Location"]
    deadline = time.monotonic() + 120
    while (job := requests.get(job_url, headers=KEY, timeout=10).json())["state"] not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert (job["state"], job["rows_total"]) == ("succeeded", 5_000)
    assert job["chunks_total"] >= 2
    results = requests.get(f"{job_url}/results?format=ndjson", headers=KEY, timeout=60).content.splitlines()
    expected = scorer.score_records([orjson.loads(line) for line in ndjson_rows]).to_records(include_row=True)
    assert [orjson.loads(line) for line in results] == expected


def test_predict_and_metrics_over_gunicorn(server: ApiServer, ndjson_rows: list[bytes]) -> None:
    rows = b"[" + b",".join(line.rstrip() for line in ndjson_rows[:100]) + b"]"
    for _ in range(4):
        answered = requests.post(f"{server.url}/predict", data=rows, timeout=30,
                                 headers={**KEY, "Content-Type": "application/json"})
        assert answered.status_code == 200
        assert len(answered.json()) == 100
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    # Summed over both gunicorn workers through the multiprocess directory.
    assert "predictq_predict_rows_total 400.0" in text


def raw_request(port: int, head: bytes) -> socket.socket:
    """A socket to the server with `head` (request line and headers) already sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def read_answer(sock: socket.socket, start: bytes = b"") -> bytes:
    """One whole HTTP response (head and Content-Length body), whatever packets it arrives in."""
    data = start
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (more := sock.recv(4096)):
        body += more
    return head + b"\r\n\r\n" + body


def test_declared_oversize_is_refused_before_any_body_byte(server: ApiServer) -> None:
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer server-key\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {10 * UPLOAD_LIMIT}\r\n\r\n").encode()
    with raw_request(server.port, head) as sock:
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"too_large"' in answer


def test_streamed_oversize_is_refused_as_soon_as_the_limit_passes(server: ApiServer) -> None:
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer server-key\r\n"
            b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
    header = b"x5,x12,x31,x44,x53,x56,x58,x62,x81,x91\n"
    block = header + b"monday,1,asia,1,1,1,1,1,July,1\n" * 8_000
    sent = 0
    answer = b""
    with raw_request(server.port, head) as sock:
        sock.settimeout(0.05)
        # Offer up to 10x the limit; stop as soon as the server answers.
        while sent < 10 * UPLOAD_LIMIT and not answer:
            piece = block if sent == 0 else block[len(header):]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        answer = read_answer(sock, answer)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer
    assert sent < 3 * UPLOAD_LIMIT


# --- upload integrity: what the service records when a body does not arrive whole ------------------------


@pytest.fixture(scope="module")
def csv_body() -> bytes:
    """About 7 MB of synthetic CSV (8,000 rows, 4 chunks): the job exists well before the body ends."""
    table = next(iter_synth(8_000, seed=12, chunk_rows=8_000))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=table.column_names)
    writer.writeheader()
    writer.writerows(table.to_pylist())
    body = out.getvalue().encode()
    assert len(body) < UPLOAD_LIMIT
    return body


def upload_head(length: int | None, content_type: str = "text/csv") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer server-key\r\n"
            f"Content-Type: {content_type}\r\n{framing}\r\n\r\n").encode()


def chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    """`body` in chunked framing, without the terminating zero-length chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size))


def end_connection(sock: socket.socket, how: str) -> bytes:
    """End the client's side as `how` says; the server's answer when it can still be read."""
    if how == "half_close":
        sock.shutdown(socket.SHUT_WR)
        return read_answer(sock)
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return b""


def acme_jobs(server: ApiServer) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    url, cursor = f"{server.url}/v1/jobs?limit=100", ""
    while True:
        page = requests.get(f"{url}&cursor={cursor}", headers=KEY, timeout=10).json()
        items |= {job["id"]: job for job in page["items"]}
        if not (cursor := page["next_cursor"]):
            return items


def settled_new_jobs(server: ApiServer, before: set[str], *, expected: int = 0) -> dict[str, dict[str, Any]]:
    """The jobs created since `before`, once at least `expected` exist and none of them is still open (a
    server that lost its client may still be reading what arrived when this is first called)."""
    deadline = time.monotonic() + 60
    while True:
        new = {job_id: job for job_id, job in acme_jobs(server).items() if job_id not in before}
        if len(new) >= expected and all(job["state"] not in {"queued", "running"} for job in new.values()):
            return new
        assert time.monotonic() < deadline, new
        time.sleep(0.2)


CUTS = {
    # name: (framing, bytes sent as a share of the body, where the cut falls, how the client ends)
    "short_body_at_a_row_boundary_after_several_chunks": ("length", 0.8, "boundary", "half_close"),
    "disconnect_mid_record": ("length", 0.6, "mid_record", "reset"),
    "disconnect_at_a_row_boundary": ("length", 0.75, "boundary", "close"),
    "disconnect_inside_the_first_chunk": ("length", 0.05, "mid_record", "close"),
    "chunked_without_its_last_chunk": ("chunked", 0.7, "boundary", "half_close"),
    "chunked_cut_inside_a_chunk": ("chunked", 0.6, "mid_chunk", "reset"),
    "chunked_with_a_bad_chunk_size": ("chunked", 0.5, "bad_size", "half_close"),
}


@pytest.mark.parametrize("case", list(CUTS))
def test_a_body_that_does_not_arrive_whole_never_becomes_a_succeeded_job(
    server: ApiServer, celery_workers: Any, worker_settings: Settings, csv_body: bytes, scorer: Any, case: str
) -> None:
    celery_workers.start()
    framing, share, where, how = CUTS[case]
    at = int(len(csv_body) * share)
    if where == "boundary":
        at = csv_body.rindex(b"\n", 0, at) + 1
    sent = csv_body[:at]
    if framing == "length":
        wire, head = sent, upload_head(len(csv_body))
    else:
        wire, head = chunked(sent), upload_head(None)
        if where == "mid_chunk":
            wire = wire[: len(wire) - 1000]
        elif where == "bad_size":
            wire += b"zz-not-hex\r\nmonday\r\n"
    before = set(acme_jobs(server))
    with raw_request(server.port, head) as sock:
        sock.sendall(wire)
        answer = end_connection(sock, how)
    # Past the first chunk the job exists (a reset may discard what the server had not read yet).
    must_exist = share > 0.4 and how != "reset"
    new = settled_new_jobs(server, before, expected=1 if must_exist else 0)
    if not must_exist:
        time.sleep(1)  # whatever the server makes of the cut body is recorded by now
        new = settled_new_jobs(server, before)

    for job in new.values():  # a job may or may not exist (cut before it was created), but never succeeds
        assert (job["state"], job["reason_code"]) == ("failed", "upload_incomplete"), job
        assert job["upload"]["complete"] is False and job["upload"]["results_deleted"] is True
        assert requests.get(f"{server.url}{job['links']['results']}?format=ndjson", headers=KEY,
                            timeout=30).content == b""
        if framing == "length":
            assert job["upload"]["bytes_expected"] == len(csv_body)
            assert job["upload"]["bytes_received"] <= len(sent)
    assert len(new) <= 1
    if answer:
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "incomplete_body"
        assert error["details"].get("job_id") in (set(new) | {None})
    # Nothing of the failed jobs is left in Redis but their records; the service goes on as before.
    store = redis.Redis.from_url(worker_settings.redis_url)
    for job_id in new:
        leftovers = [k for k in store.scan_iter(f"{worker_settings.key_prefix}:job:{job_id}:*")
                     if k.split(b":")[-2] in {b"in", b"res", b"err"}]
        assert leftovers == []
    whole = requests.post(f"{server.url}/v1/jobs", data=csv_body[: csv_body.index(b"\n", 20_000) + 1],
                          headers={**KEY, "Content-Type": "text/csv"}, timeout=60)
    assert whole.status_code == 202, whole.text
    done = settled_new_jobs(server, before | set(new), expected=1)
    assert [(job["state"], job["outcome"]) for job in done.values()] == [("succeeded", "all_rows_scored")]
