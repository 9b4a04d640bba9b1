"""The console at `/`: a static page for people (upload, progress, summary, downloads, one-row scoring).

The page and its files need no key: the page asks for one, keeps it in the tab's sessionStorage and sends it
only in request headers to the API. Every response of this blueprint carries a strict Content-Security-Policy
(scripts and styles only from these files, no inline code), so data shown on the page can never run.
"""

from __future__ import annotations

from flask import Blueprint, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
bp = Blueprint("console", __name__, static_folder="static/console", static_url_path="/console")


@bp.get("/")
def index() -> Response:
    """The console page."""
    response = bp.send_static_file("index.html")
    response.cache_control.no_cache = True
    return response


@bp.after_request
def _secure(response: Response) -> Response:
    """Strict policy headers on the page and every console file."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response
