"""Signed webhooks per the Standard Webhooks specification: signing for the service, `verify` for receivers.

A delivery carries three headers: `webhook-id` (the same on every retry of one event), `webhook-timestamp`
(epoch seconds of this attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
under the secret's bytes; several space-separated signatures may be sent while a secret is rotated).

Receivers::

    from predictq.webhooks import verify, WebhookVerificationError
    try:
        event = verify(request_body_bytes, request_headers, "whsec_...")
    except WebhookVerificationError:
        return 400
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(ValueError):
    """A webhook whose headers are missing, too old or too new, or whose signature does not match."""


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (at least 16 bytes); ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret must look like 'whsec_<base64>'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret must hold at least 16 bytes (24 base64 characters)")
    return key


def tenant_defaults(text: str) -> dict[str, str]:
    """Parse PREDICTQ_WEBHOOK_DEFAULTS: "tenant=url" pairs separated by commas or newlines."""
    defaults = {}
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.strip()
        if not entry:
            continue
        tenant, sep, url = entry.partition("=")
        if not sep or not tenant.strip() or not url.strip():
            raise ValueError("expected 'tenant=url' pairs separated by commas")
        defaults[tenant.strip()] = url.strip()
    return defaults


def new_secret() -> str:
    """A fresh random secret in the `whsec_` form."""
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers (plus Content-Type) for `body`, timestamped `now`."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "Content-Type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing {name} header")


def verify(payload: bytes | str, headers: Mapping[str, str], secret: str,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> Any:
    """Check a delivery's signature and timestamp window; returns the decoded JSON payload.

    Raises WebhookVerificationError when a header is missing, the timestamp is more than `tolerance`
    seconds away from `now`, or no `v1` signature matches.
    """
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance}s away from now")
    expected = sign(secret, msg_id, timestamp, body).partition(",")[2]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise WebhookVerificationError("no matching signature")
