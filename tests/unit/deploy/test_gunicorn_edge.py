"""Gunicorn at the edge: access-log atoms without credentials, and its own errors in the JSON error shape."""

from __future__ import annotations

import base64
import datetime
import socket
from types import SimpleNamespace

import orjson
import pytest
from gunicorn.config import Config
from gunicorn.http import errors

from api.app import ROUTE_ENVIRON_KEY as APP_ROUTE_KEY
from predictq.gunicorn_edge import (
    ROUTE_ENVIRON_KEY,
    JsonErrorWorker,
    RedactingLogger,
    error_bytes,
    parse_error_answer,
)

KEY = "sekrit-key-0123456789"


def atoms(environ: dict[str, str], headers: list[tuple[str, str]]) -> dict[str, object]:
    cfg = Config()
    logger = RedactingLogger(cfg)
    request = SimpleNamespace(headers=headers)
    response = SimpleNamespace(status="200 OK", headers=[("Location", "/v1/jobs/abc")], sent=10)
    return logger.atoms(response, request, environ, datetime.timedelta(milliseconds=3))


def test_the_app_and_the_logger_share_the_route_key() -> None:
    assert APP_ROUTE_KEY == ROUTE_ENVIRON_KEY


def test_access_log_atoms_carry_no_credential() -> None:
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": f"/v1/jobs/{KEY}?api_key={KEY}", "PATH_INFO": f"/v1/jobs/{KEY}",
        "QUERY_STRING": f"api_key={KEY}", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_AUTHORIZATION": basic,
        "HTTP_REFERER": f"https://x.example/?token={KEY}", "REMOTE_ADDR": "127.0.0.1",
        ROUTE_ENVIRON_KEY: "/v1/jobs/<job_id>",
    }
    headers = [("AUTHORIZATION", basic), ("X-API-KEY", KEY), ("COOKIE", KEY), ("USER-AGENT", "curl/8"),
               ("X-REQUEST-ID", "r1")]
    got = atoms(environ, headers)
    assert KEY not in repr(got) and basic not in repr(got)
    assert (got["r"], got["U"], got["q"], got["u"], got["f"]) == ("GET /v1/jobs/<job_id> HTTP/1.1",
                                                                  "/v1/jobs/<job_id>", "-", "-", "-")
    assert (got["{user-agent}i"], got["{x-request-id}i"], got["{location}o"]) == ("curl/8", "r1", "/v1/jobs/abc")


def test_unrouted_requests_and_odd_methods_are_logged_by_kind_only() -> None:
    environ = {"REQUEST_METHOD": KEY.upper(), "RAW_URI": f"/{KEY}", "PATH_INFO": f"/{KEY}", "QUERY_STRING": "",
               "SERVER_PROTOCOL": KEY}
    got = atoms(environ, [])
    assert got["r"] == "OTHER - -"
    assert KEY not in repr(got) and KEY.upper() not in repr(got)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.LimitRequestLine(9000, 8190), 414, "uri_too_long"),
        (errors.LimitRequestHeaders("too many"), 431, "headers_too_large"),
        (errors.InvalidRequestLine(KEY), 400, "bad_request_line"),
        (errors.InvalidRequestMethod(KEY), 400, "bad_request_line"),
        (errors.InvalidHTTPVersion(KEY), 400, "bad_request_line"),
        (errors.InvalidHeaderName(KEY), 400, "bad_header"),
        (errors.InvalidChunkSize(KEY.encode()), 400, "bad_chunked_body"),
        (errors.UnsupportedTransferCoding(KEY), 501, "unsupported_transfer_coding"),
        (errors.InvalidResponseHeaderName(KEY), 500, "internal"),
        (RuntimeError(KEY), 500, "internal"),
    ],
)
def test_gunicorn_errors_answer_json_without_echoing_the_input(exc: Exception, status: int, code: str) -> None:
    assert parse_error_answer(exc)[:2] == (status, code)
    answer = error_bytes(*parse_error_answer(exc))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"\r\nContent-Type: application/json\r\n" in head and b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    error = orjson.loads(body)["error"]
    assert (error["code"], error["details"]) == (code, {}) and error["message"]
    assert KEY.encode() not in answer



class RecordingLog:
    """Stands in for gunicorn's logger: keeps every message as it would be printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> object:
        return lambda message, *args, **kwargs: self.lines.append(f"{level}: {message % args if args else message}")


@pytest.mark.parametrize(
    ("exc", "status"), [(errors.InvalidRequestLine(f"{KEY} / HTTP/1.1"), 400), (ValueError(KEY), 500)]
)
def test_worker_answers_json_and_logs_no_request_bytes(exc: Exception, status: int) -> None:
    worker = JsonErrorWorker.__new__(JsonErrorWorker)  # only what handle_error uses
    worker.cfg, worker.log = Config(), RecordingLog()
    server, client = socket.socketpair()
    with client:
        worker.handle_error(None, server, ("127.0.0.1", 5000), exc)
        answer = client.recv(65536)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()) and b"application/json" in answer
    assert worker.log.lines and all(KEY not in line for line in worker.log.lines)
    assert server.fileno() == -1, "the connection is closed after the answer"
