"""API keys and tenants: keys are configured in plain text, kept only as sha256 digests, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from flask import Request, g, request

from api.errors import ApiError
from core.settings import Settings, SettingsError

DEFAULT_TENANT = "default"
HOW_TO_SEND_KEY = "send 'Authorization: Bearer <key>', 'X-API-Key: <key>' or HTTP Basic with the key as user name"


def key_digest(key: str) -> bytes:
    """The sha256 digest under which a key is stored and compared."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_key_specs(text: str, source: str) -> list[tuple[str, str]]:
    """Parse "key:tenant" pairs separated by commas or newlines (blank lines and # comments are skipped)."""
    pairs: list[tuple[str, str]] = []
    for raw in text.replace(",", "\n").splitlines():
        spec = raw.split("#", 1)[0].strip()
        if not spec:
            continue
        key, sep, tenant = spec.rpartition(":")
        if not sep or not key.strip() or not tenant.strip():
            raise SettingsError(f"{source}: expected 'key:tenant', got an entry without both parts")
        pairs.append((key.strip(), tenant.strip()))
    return pairs


@dataclass(frozen=True)
class KeyRing:
    """Maps key digests to tenants; `enabled` is False when PREDICTQ_AUTH=disabled (one tenant, "default")."""

    digests: tuple[tuple[bytes, str], ...]
    enabled: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Read keys from PREDICTQ_API_KEYS and PREDICTQ_API_KEYS_FILE; plain keys are not kept."""
        if settings.auth_mode == "disabled":
            return cls((), enabled=False)
        pairs = parse_key_specs(settings.api_keys, "PREDICTQ_API_KEYS")
        if settings.api_keys_file:
            path = Path(settings.api_keys_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"PREDICTQ_API_KEYS_FILE: cannot read {path}: {exc.strerror}") from None
            pairs += parse_key_specs(text, str(path))
        return cls(tuple((key_digest(key), tenant) for key, tenant in pairs))

    def tenant_for(self, key: str) -> str | None:
        """The tenant of `key`, or None; every configured digest is compared so timing says nothing."""
        digest = key_digest(key)
        found: str | None = None
        for stored, tenant in self.digests:
            if hmac.compare_digest(stored, digest):
                found = tenant
        return found


def basic_key(credentials: str) -> str:
    """The key in HTTP Basic credentials (`curl -u KEY:`): the user name, or the password when the user name is
    empty (`curl -u :KEY`); "" when they are not base64 of UTF-8 `user:password`."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    user, sep, password = decoded.partition(":")
    return (user or password).strip() if sep else ""


def presented_key(req: Request) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, `Authorization: Basic` with the key as user
    name, or `X-API-Key: <key>` ("" for any other or malformed Authorization, which is refused, not ignored)."""
    header = req.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        return basic_key(value.strip()) if scheme.lower() == "basic" else ""
    key = req.headers.get("X-API-Key", "").strip()
    return key or None


def authenticate(keyring: KeyRing) -> str:
    """Resolve the caller's tenant into `g.tenant`, or refuse with 401 (bad key) or 503 (no keys configured)."""
    if not keyring.enabled:
        g.tenant = DEFAULT_TENANT
        return DEFAULT_TENANT
    if not keyring.digests:
        raise ApiError(
            503,
            "auth_not_configured",
            "no API keys are configured: set PREDICTQ_API_KEYS or PREDICTQ_API_KEYS_FILE, "
            "or PREDICTQ_AUTH=disabled for local use",
        )
    key = presented_key(request)
    tenant = keyring.tenant_for(key) if key else None
    if tenant is None:
        if key is None:
            message = f"missing API key: {HOW_TO_SEND_KEY}"
        elif key == "":
            message = f"unsupported or malformed Authorization header: {HOW_TO_SEND_KEY}"
        else:
            message = "invalid API key"
        raise ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="predictq"'})
    g.tenant = tenant
    return tenant


def rate_limit_identity() -> str:
    """Who a rate limit counts against: a digest of the presented key, else the client address."""
    key = presented_key(request)
    if key:
        return "key:" + key_digest(key).hex()[:32]
    return "addr:" + (request.remote_addr or "unknown")
