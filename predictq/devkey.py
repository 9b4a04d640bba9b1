"""A development API key kept in a file, so a fresh `docker compose up` is usable at once on a laptop."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import Settings

DEV_TENANT = "local"


def needs_dev_key(settings: Settings) -> bool:
    """True when auth is required, no key is configured, and a development key file is named."""
    configured = settings.api_keys.strip() or settings.api_keys_file
    return settings.auth_mode == "required" and not configured and bool(settings.dev_key_file)


def ensure_dev_key(path: Path, tenant: str = DEV_TENANT) -> str:
    """The key stored at `path` as a "key:tenant" line; written with a fresh random key (mode 600) if absent."""
    if path.is_file():
        key, _, _ = path.read_text(encoding="utf-8").strip().rpartition(":")
        if key:
            return key
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{key}:{tenant}\n")
    return key
