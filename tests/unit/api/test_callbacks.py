"""callback_url on POST /v1/jobs: refused without a secret or outside the allow list; tenant defaults."""

from __future__ import annotations

import base64

import orjson
import pytest

from core.settings import Settings, SettingsError
from core.webhooks import tenant_defaults

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
HOOKS = {"webhook_secret": SECRET, "webhook_allowed_hosts": "hooks.example.com"}


def submit(client, query: str = "", rows: int = 3):
    body = b"".join(orjson.dumps({"x5": "monday", "x12": 1, "x31": "asia", "x44": i, "x53": 1, "x56": 1, "x58": 1,
                                  "x62": 1, "x81": "July", "x91": 1}) + b"\n" for i in range(rows))
    return client.post(f"/v1/jobs{query}", data=body, headers={"Content-Type": "application/x-ndjson"})


def test_without_a_secret_a_callback_is_refused_before_any_job(make_app) -> None:
    client = make_app().test_client()
    refused = submit(client, "?callback_url=https://hooks.example.com/x")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "webhooks_not_configured"
    assert client.get("/v1/jobs").get_json()["items"] == []


@pytest.mark.parametrize("url", ["https://evil.example.com/x", "http://127.0.0.1/x", "http://169.254.169.254/",
                                 "file:///etc/passwd"])
def test_a_callback_outside_the_allow_list_is_400(make_app, url: str) -> None:
    refused = submit(make_app(**HOOKS).test_client(), f"?callback_url={url}")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "invalid_callback_url"


def test_an_allowed_callback_and_a_tenant_default_are_recorded(make_app) -> None:
    client = make_app(**HOOKS, webhook_defaults="default=https://hooks.example.com/default").test_client()
    named = submit(client, "?callback_url=https://hooks.example.com/mine")
    assert named.status_code == 202
    assert named.get_json()["webhook"] == {"url": "https://hooks.example.com/mine", "state": "waiting",
                                           "attempts": 0, "last_status": None, "last_error": None}
    assert submit(client).get_json()["webhook"]["url"] == "https://hooks.example.com/default"


def test_tenant_defaults_parse_and_fail_fast() -> None:
    assert tenant_defaults("a=https://x/1, b=https://y/2\n") == {"a": "https://x/1", "b": "https://y/2"}
    with pytest.raises(SettingsError, match="PREDICTQ_WEBHOOK_DEFAULTS"):
        Settings.from_env({"PREDICTQ_WEBHOOK_DEFAULTS": "no-url-here"})
