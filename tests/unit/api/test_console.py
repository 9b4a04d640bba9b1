"""The console's page and files: served without a key, under a strict Content-Security-Policy, no inline code."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from core.states import CLOSED_STATES

STATIC = resources.files("api") / "static" / "console"


@pytest.fixture
def client(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme").test_client()


@pytest.mark.parametrize("path", ["/", "/console/console.js", "/console/console.css"])
def test_page_and_files_need_no_key_and_carry_a_strict_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_page_has_no_inline_script_or_style_and_names_every_control():
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script"
    assert "<style" not in page and " style=" not in page and not re.search(r"\son[a-z]+=", page)
    for control in re.findall(r"<(?:input|select)\b[^>]*>", page):
        control_id = re.search(r'id="([^"]+)"', control).group(1)
        assert f'<label for="{control_id}"' in page, control
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN


def test_script_never_writes_html():
    script = (STATIC / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "localStorage" not in script and "sessionStorage" in script


def test_api_errors_stay_json(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_script_knows_the_closed_states():
    """The console's copy of the closed states (a job there stops being polled) is core.states'."""
    script = (STATIC / "console.js").read_text()
    closed = re.search(r"const CLOSED = new Set\(\[(.*?)\]\)", script)
    assert closed is not None
    assert set(re.findall(r'"(\w+)"', closed.group(1))) == CLOSED_STATES
