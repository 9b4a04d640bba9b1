"""Gunicorn at the edge: an access log that never carries a credential, and parse errors in the one JSON shape.

Gunicorn logs the HTTP Basic user, the raw request line (path and query string) and, for a request it cannot
parse, the offending text; any of them can hold an API key (`curl -u KEY:`, `?api_key=KEY`, a key pasted into a
path). The access log here names the route the app matched (`/v1/jobs/<job_id>`) instead of the path, never the
query string, user or credential headers. Errors gunicorn answers itself (bad request line, 414, 431, bad chunked
framing) are `{"error": {"code", "message", "details"}}` bodies instead of HTML, and echo none of the input.
"""

from __future__ import annotations

import re
from datetime import datetime
from http import HTTPStatus
from typing import Any

import orjson
from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.http import errors
from gunicorn.http.message import Request
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.gthread import ThreadWorker

# The app stores the matched URL rule here (api.app); the access log prints it in place of the path.
ROUTE_ENVIRON_KEY = "predictq.route"
UNROUTED = "-"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The only request headers the access log may print: none of them carries a credential.
LOGGED_HEADERS = frozenset({"user-agent", "x-request-id", "content-type", "content-length"})
_PROTOCOL = re.compile(r"HTTP/\d\.\d")
LINGER_SECONDS = 1.0


def _loggable(atom: str) -> bool:
    """Request headers only from the allow list (`{name}i`), no environ variables (`{name}e`), the rest as is."""
    if atom.endswith("}e"):
        return False
    return not atom.endswith("}i") or atom[1:-2] in LOGGED_HEADERS


class RedactingLogger(Logger):
    """Gunicorn's logger with credential-free access-log atoms, whatever `access_log_format` asks for."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """Gunicorn's atoms with the user, path, query, referrer, credential headers and environ removed."""
        atoms = super().atoms(resp, req, environ, request_time)
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in METHODS else "OTHER"
        protocol = environ.get("SERVER_PROTOCOL", "")
        protocol = protocol if _PROTOCOL.fullmatch(protocol) else "-"
        route = environ.get(ROUTE_ENVIRON_KEY) or UNROUTED
        kept = {name: value for name, value in atoms.items() if _loggable(name)}
        return kept | {"u": "-", "r": f"{method} {route} {protocol}", "m": method, "U": route, "q": "-",
                       "H": protocol, "f": "-"}


# (gunicorn exception types, status, stable code, message): first match wins, so subclasses come first.
_PARSE_ERRORS: tuple[tuple[tuple[type[Exception], ...], int, str, str], ...] = (
    ((errors.InvalidResponseHeader, errors.InvalidResponseHeaderName), 500, "internal", "internal server error"),
    ((errors.LimitRequestLine,), 414, "uri_too_long", "the request line is too long"),
    ((errors.LimitRequestHeaders,), 431, "headers_too_large", "the request headers are too many or too large"),
    ((errors.InvalidRequestLine, errors.InvalidRequestMethod, errors.InvalidHTTPVersion), 400,
     "bad_request_line", "the request line is not valid HTTP/1.1"),
    ((errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding), 400,
     "bad_header", "a request header is not valid HTTP/1.1"),
    ((errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension), 400,
     "bad_chunked_body", "the chunked request body is not valid"),
    ((errors.UnsupportedTransferCoding,), 501, "unsupported_transfer_coding",
     "only the chunked transfer coding is supported"),
    ((errors.ExpectationFailed,), 417, "expectation_failed", "only 'Expect: 100-continue' is supported"),
    ((errors.ForbiddenProxyRequest,), 403, "forbidden", "request forbidden"),
    ((errors.InvalidProxyLine, errors.InvalidSchemeHeaders, errors.InvalidH2CPreface), 400,
     "bad_request", "the request is not valid HTTP/1.1"),
)


def parse_error_answer(exc: BaseException) -> tuple[int, str, str]:
    """Status, code and message for an exception gunicorn raised while reading a request (500 for anything
    else); the message is fixed text, never the exception's, which quotes the client's bytes."""
    for types, status, code, message in _PARSE_ERRORS:
        if isinstance(exc, types):
            return status, code, message
    return 500, "internal", "internal server error"


def error_bytes(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response (closing the connection) with the one JSON error body."""
    body = orjson.dumps({"error": {"code": code, "message": message, "details": {}}})
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):
    """Gunicorn's gthread worker whose own error answers are JSON and whose error log quotes no request bytes."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn could not parse or serve, as gunicorn does, but in the one JSON shape."""
        started = datetime.now()
        addr = addr or ("", -1)  # unix socket
        status, code, message = parse_error_answer(exc)
        if status == 500:
            self.log.exception("error handling a request from ip=%s", addr[0])
        else:
            # Gunicorn's own message quotes the request line or header, which may be a credential.
            self.log.warning("invalid request from ip=%s: %s", addr[0], type(exc).__name__)
        if req is None and isinstance(exc, errors.InvalidHeader | errors.InvalidHeaderName):
            req = getattr(exc, "req", None)  # the request whose header failed (other errors keep a string here)
        if isinstance(req, Request):
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status = f"{status} {HTTPStatus(status).phrase}"
            self.log.access(resp, req, environ, datetime.now() - started)
        try:
            util.write_nonblock(client, error_bytes(status, code, message))
        except Exception:  # the client is gone: nothing to answer
            self.log.debug("failed to send an error answer")
            return
        # Unread request bytes would make the close a reset, which can destroy the answer before the client
        # reads it: half-close, drain briefly (bounded), then close.
        util.close_graceful(client, timeout=LINGER_SECONDS)
