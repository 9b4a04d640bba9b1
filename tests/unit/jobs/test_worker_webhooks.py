"""Webhooks without a network: signatures, the allow list, address checks, the once-per-job claim and the
attempt guard (fakeredis)."""

from __future__ import annotations

import base64
import dataclasses
import itertools
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from core.webhooks import WebhookVerificationError, decode_secret, new_secret, sign, signed_headers, verify
from jobs.service import JobService
from jobs.webhooks import (
    AllowList,
    CallbackRefused,
    check_callback_url,
    deliver,
    resolve_once,
    retry_delay,
)

LUA = Path(__file__).resolve().parents[3] / "jobs" / "lua"

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_signature_follows_the_standard_webhooks_example() -> None:
    # The specification's published test vector.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_a_signed_body_and_refuses_tampering() -> None:
    body = b'{"type":"job.succeeded"}'
    headers = signed_headers(SECRET, "msg_1", body, now=1_000_000)
    assert verify(body, headers, SECRET, now=1_000_010) == {"type": "job.succeeded"}
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(body + b" ", headers, SECRET, now=1_000_010)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(body, {**headers, "webhook-id": "msg_2"}, SECRET, now=1_000_010)
    with pytest.raises(WebhookVerificationError, match="away from now"):
        verify(body, headers, SECRET, now=1_000_000 + 301)
    with pytest.raises(WebhookVerificationError, match="missing webhook-signature"):
        verify(body, {k: v for k, v in headers.items() if k != "webhook-signature"}, SECRET, now=1_000_000)


def test_verify_accepts_any_of_several_signatures() -> None:
    body = b"{}"
    headers = signed_headers(SECRET, "msg_1", body, now=5)
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert verify(body, headers, SECRET, now=5) == {}


@pytest.mark.parametrize("secret", ["plain", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()])
def test_bad_secrets_are_refused_at_start(secret: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(secret)
    with pytest.raises(SettingsError, match="PREDICTQ_WEBHOOK_SECRET"):
        Settings.from_env({"PREDICTQ_WEBHOOK_SECRET": secret})
    assert decode_secret(new_secret())


ALLOW = AllowList.parse("hooks.example.com, *.partner.example, 127.0.0.1/32, 203.0.113.7")


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "http://a.partner.example:8080/cb?x=1",
                                 "http://127.0.0.1:9000/hook"])
def test_allowed_callback_urls(url: str) -> None:
    assert check_callback_url(url, ALLOW) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/x", "http"),
    ("https://evil.example.com/x", "not in PREDICTQ_WEBHOOK_ALLOWED_HOSTS"),
    ("https://partner.example/x", "not in"),
    ("http://127.0.0.2/x", "not in"),
    ("http://user:pw@hooks.example.com/x", "credentials"),
    ("http://hooks.example.com:99999/x", "port"),
    ("https://" + "a" * 2100, "longer"),
])
def test_refused_callback_urls(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        check_callback_url(url, ALLOW)


def test_a_listed_private_address_is_refused_unless_its_network_is_listed() -> None:
    allow = AllowList.parse("10.1.2.3/32, intranet.example")
    assert check_callback_url("http://10.1.2.3/", allow)
    with pytest.raises(CallbackRefused, match="private"):
        resolve_once("intranet.example", 80, allow, lambda host, port: ["10.9.9.9"])
    with pytest.raises(CallbackRefused, match="private"):
        resolve_once("intranet.example", 80, allow, lambda host, port: ["169.254.169.254"])
    assert resolve_once("intranet.example", 80, allow, lambda host, port: ["10.1.2.3"]) == "10.1.2.3"
    assert resolve_once("intranet.example", 80, allow, lambda host, port: ["93.184.215.14"]) == "93.184.215.14"


def test_retry_delays_grow_to_hours() -> None:
    settings = Settings()
    delays = [retry_delay(n, settings) for n in range(1, settings.webhook_max_attempts)]
    assert delays[0] == 10 and all(b == min(4 * a, 6 * 3600) for a, b in itertools.pairwise(delays))
    assert 9 * 3600 < sum(delays) < 10 * 3600  # the README says "about 10 hours"


@pytest.fixture
def notified() -> list[str]:
    return []


@pytest.fixture
def hook_service(client, settings, notified) -> JobService:
    return JobService(client, settings, enqueue=lambda *a: None, notify=notified.append)


def test_a_closed_job_with_a_callback_is_notified_once(hook_service: JobService, notified: list[str]) -> None:
    with_hook = hook_service.create("acme", fmt="csv", callback_url="http://127.0.0.1/x")["id"]
    without = hook_service.create("acme", fmt="csv")["id"]
    hook_service.cancel("acme", with_hook)
    hook_service.cancel("acme", with_hook)
    hook_service.abort_upload(with_hook, "upload_failed", "late")
    hook_service.cancel("acme", without)
    assert notified == [with_hook]
    assert hook_service.get("acme", with_hook)["webhook"] == {
        "url": "http://127.0.0.1/x", "state": "pending", "attempts": 0, "last_status": None, "last_error": None}
    assert hook_service.get("acme", without)["webhook"] is None


def test_sealing_an_empty_upload_notifies(hook_service: JobService, notified: list[str]) -> None:
    job_id = hook_service.create("acme", fmt="csv", callback_url="http://127.0.0.1/x")["id"]
    hook_service.seal(job_id, 0, 0)
    assert notified == [job_id]


def test_attempts_run_once_per_number_and_a_refused_address_is_never_called(hook_service: JobService) -> None:
    settings = dataclasses.replace(hook_service.settings, webhook_secret=SECRET,
                                   webhook_allowed_hosts="hooks.example.com")
    job_id = hook_service.create("acme", fmt="csv", callback_url="http://hooks.example.com/x")["id"]
    store = hook_service.store
    hook_service.cancel("acme", job_id)
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]  # the name now points at loopback, which is not allowed

    assert deliver(store, settings, job_id, 2, resolver).state == "skipped"  # attempt 1 not made yet
    assert deliver(store, settings, job_id, 1, resolver).state == "refused"
    assert deliver(store, settings, job_id, 1, resolver).state == "skipped"  # a duplicate message
    assert resolved == ["hooks.example.com"]
    webhook = hook_service.get("acme", job_id)["webhook"]
    assert (webhook["state"], webhook["attempts"]) == ("refused", 1)
    assert "127.0.0.1" in webhook["last_error"]

