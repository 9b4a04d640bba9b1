"""X-Request-Id: every request gets an id (the client's own when it is sane), sent back on every response,
written into every error body's `details.request_id` and onto every log line of the request."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, has_request_context, request

from core.logging_context import request_id_var

HEADER = "X-Request-Id"
# What a client may choose: short, printable, nothing that could split a log line or a header.
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def accepted_id(raw: str | None) -> str:
    """The client's id when it is 1 to 128 safe characters, else a fresh one."""
    if raw is not None and CLIENT_ID_RE.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    return g.get("request_id") if has_request_context() else None


def _begin() -> None:
    g.request_id = accepted_id(request.headers.get(HEADER))
    g.request_id_token = request_id_var.set(g.request_id)


def _answer(response: Response) -> Response:
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def _end(_: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def init_app(app: Flask) -> None:
    """Register the hooks; the id is set before any other hook runs (authentication errors carry it too)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_answer)
    app.teardown_request(_end)
