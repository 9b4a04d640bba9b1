"""API keys: parsing, hashed storage, Bearer, Basic and X-API-Key, 401/503, and the disabled mode's one tenant."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from api.auth import KeyRing, key_digest, parse_key_specs
from core.settings import Settings, SettingsError


def test_parse_key_specs_accepts_commas_newlines_and_comments() -> None:
    text = "k1:acme, k2:globex\n# a comment\n\nk:3:initech  # trailing\n"
    assert parse_key_specs(text, "test") == [("k1", "acme"), ("k2", "globex"), ("k:3", "initech")]


@pytest.mark.parametrize("bad", ["justakey", ":tenant", "key:", "key: "])
def test_parse_key_specs_refuses_incomplete_entries(bad: str) -> None:
    with pytest.raises(SettingsError, match="key:tenant"):
        parse_key_specs(bad, "PREDICTQ_API_KEYS")


def test_keyring_keeps_only_digests_and_resolves_tenants(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("filekey:globex\n")
    ring = KeyRing.from_settings(Settings(api_keys="envkey:acme", api_keys_file=str(keys_file)))
    assert ring.tenant_for("envkey") == "acme"
    assert ring.tenant_for("filekey") == "globex"
    assert ring.tenant_for("nope") is None
    assert all(stored != b"envkey" for stored, _ in ring.digests)
    assert (key_digest("envkey"), "acme") in ring.digests


def test_unreadable_keys_file_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PREDICTQ_API_KEYS_FILE"):
        KeyRing.from_settings(Settings(api_keys_file=str(tmp_path / "missing")))


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sekrit"},
        {"authorization": "bearer sekrit"},
        {"X-API-Key": "sekrit"},
        basic("sekrit:"),  # curl -u sekrit:
        basic(":sekrit"),  # curl -u :sekrit
        basic("sekrit:ignored"),
    ],
)
def test_every_way_of_sending_the_key_carries_it(make_app, good_row, headers: dict[str, str]) -> None:
    client = make_app(auth_mode="required", api_keys="sekrit:acme").test_client()
    assert client.post("/predict", json=good_row, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"X-API-Key": "wrong"}, "invalid API key"),
        ({"Authorization": "Bearer wrong", "X-API-Key": "sekrit"}, "invalid API key"),
        ({"Authorization": "Basic c2Vrcml0", "X-API-Key": "sekrit"}, "unsupported or malformed Authorization"),
        ({"Authorization": "Bearer "}, "unsupported or malformed Authorization"),
        ({"Authorization": "Digest sekrit"}, "unsupported or malformed Authorization"),
        ({"Authorization": "Basic !!notbase64"}, "unsupported or malformed Authorization"),
        ({"Authorization": "Basic " + base64.b64encode(b"\xffsekrit:").decode()}, "malformed Authorization"),
        (basic(":"), "unsupported or malformed Authorization"),
        (basic("wrong:sekrit"), "invalid API key"),  # the user name is the key when there is one
    ],
)
def test_missing_or_wrong_key_is_401(make_app, good_row, headers: dict[str, str], message: str) -> None:
    client = make_app(auth_mode="required", api_keys="sekrit:acme").test_client()
    response = client.post("/predict", json=good_row, headers=headers)
    assert response.status_code == 401
    text = response.get_json()["error"]["message"]
    assert message in text
    assert message == "invalid API key" or text.endswith("or HTTP Basic with the key as user name")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/v1/jobs", headers=headers).status_code == 401


def test_required_auth_without_keys_refuses_with_503_saying_how_to_fix(make_app, good_row) -> None:
    client = make_app(auth_mode="required", api_keys="").test_client()
    response = client.post("/predict", json=good_row, headers={"X-API-Key": "anything"})
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "auth_not_configured"
    assert "PREDICTQ_API_KEYS" in error["message"]


def test_ops_routes_need_no_key(make_app) -> None:
    client = make_app(auth_mode="required", api_keys="sekrit:acme").test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
