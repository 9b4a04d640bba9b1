"""Idempotent submits: `Idempotency-Key` on POST /v1/jobs, with Stripe's semantics.

A key belongs to one tenant. The first request with a key reserves it atomically (one Lua script) before any
row is staged; then:

- while that request is still uploading, another with the same key gets 409 `idempotency_key_in_use` with
  Retry-After (it never starts a second job);
- once its upload is complete, the key is bound to the job (and the sha256 digest of the uploaded bytes) until
  the job expires: a request with the same key and the same body gets 200 with that job and
  `Idempotent-Replayed: true`; a different body or different options get 422 `idempotency_key_reused`;
- if the first upload does not complete (the connection dropped, the body was unreadable or too large), its
  job is failed and the key is released, so a retry with the same key starts afresh and creates exactly one
  job that completes. A request refused before reading the body (401, 415, 429, 503) never touches the key.

A reservation whose API process died mid-upload lapses after `PREDICTQ_UPLOAD_IDLE_SECONDS`, when the
reaper fails that upload's job too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Request, Response

from api.errors import ApiError
from api.responses import json_response
from core.settings import Settings
from jobs.keys import id_expiry

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_RE = re.compile(r"[A-Za-z0-9._:=+/-]{1,255}")
IN_USE_RETRY_AFTER_SECONDS = 2

# KEYS: record. ARGV: token, pending ttl (ms). Reserves the key, or returns what it holds.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[1], 'state', 'pending', 'token', ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'reserved'}
end
local f = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'digest', 'options')
return {'held', f[1] or '', f[2] or '', f[3] or '', f[4] or ''}
"""
# KEYS: record. ARGV: token, operation, arguments. Changes the record only while the caller still holds it.
_UPDATE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
    return 0
end
local op = ARGV[2]
if op == 'attach' then
    redis.call('HSET', KEYS[1], 'job_id', ARGV[3])
elseif op == 'refresh' then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif op == 'bind' then
    redis.call('HSET', KEYS[1], 'state', 'done', 'job_id', ARGV[3], 'digest', ARGV[4], 'options', ARGV[5])
    redis.call('HDEL', KEYS[1], 'token')
    redis.call('EXPIREAT', KEYS[1], ARGV[6])
elseif op == 'release' then
    redis.call('DEL', KEYS[1])
end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record_key(prefix: str, tenant: str, key: str) -> str:
    """Where a tenant's key is kept (hashed: tenant names and keys never appear in Redis key names)."""
    digest = hashlib.sha256(f"{tenant}\x00{key}".encode()).hexdigest()
    return f"{prefix}:idem:{digest}"


def requested_key(req: Request) -> str | None:
    """The request's Idempotency-Key, None when absent; 400 when it is not 1 to 255 safe characters."""
    key = req.headers.get(HEADER)
    if key is None:
        return None
    if not KEY_RE.fullmatch(key):
        raise ApiError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1 to 255 characters from A-Z a-z 0-9 . _ : = + / -",
                       {"length": len(key)})
    return key


@dataclass
class Claim:
    """A reserved key, held by this request until it is bound to a job or released."""

    client: redis.Redis
    key: str
    options: str
    pending_ttl_ms: int
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def _update(self, op: str, *args: Any) -> bool:
        return bool(self.client.eval(_UPDATE, 1, self.key, self.token, op, *args))

    def attach(self, job_id: str) -> None:
        """Note the job this request created (for operators reading Redis while the upload runs)."""
        self._update("attach", job_id)

    def refresh(self) -> None:
        """Keep the reservation while the upload is still sending."""
        self._update("refresh", self.pending_ttl_ms)

    def bind(self, job_id: str, sha256: str) -> None:
        """The upload is complete: the key now names `job_id` (and this body's digest) until the job expires."""
        self._update("bind", job_id, sha256, self.options, id_expiry(job_id) or 0)

    def release(self) -> None:
        """The upload did not complete: a retry with the same key may start again."""
        self._update("release")

    @contextmanager
    def released_on_error(self) -> Iterator[None]:
        """Release the key if the block raises (the upload did not complete), then re-raise."""
        try:
            yield
        except BaseException:
            self.release()
            raise


class NoClaim:
    """A request without an Idempotency-Key: every step is a no-op."""

    def attach(self, job_id: str) -> None:
        """Nothing to note."""

    def refresh(self) -> None:
        """Nothing to keep."""

    def bind(self, job_id: str, sha256: str) -> None:
        """Nothing to bind."""

    @contextmanager
    def released_on_error(self) -> Iterator[None]:
        """Nothing to release."""
        yield


@dataclass(frozen=True)
class Held:
    """A key already bound to a job by an earlier request; `options` are those of the request repeating it."""

    key: str
    job_id: str
    digest: str
    held_options: str
    options: str


def options_text(options: tuple[str | None, ...]) -> str:
    """The request's options (format, id column, callback URL) as one comparable text."""
    return "\n".join(option or "" for option in options)


def claim_for(req: Request, client: redis.Redis, settings: Settings, tenant: str,
              options: tuple[str | None, ...]) -> Claim | Held | NoClaim:
    """Reserve the request's Idempotency-Key; NoClaim without one, Held for a repeat, 409 while in progress."""
    key = requested_key(req)
    if key is None:
        return NoClaim()
    return claim(client, settings.key_prefix, tenant, key, options_text(options), settings.upload_idle_seconds)


def claim(client: redis.Redis, prefix: str, tenant: str, key: str, options: str,
          pending_ttl_seconds: int) -> Claim | Held:
    """Reserve `key` for this request, or return the job it is bound to; 409 while another request holds it."""
    record = record_key(prefix, tenant, key)
    mine = Claim(client, record, options, pending_ttl_seconds * 1000)
    reply = [_text(part) for part in client.eval(_RESERVE, 1, record, mine.token, mine.pending_ttl_ms)]
    if reply[0] == "reserved":
        return mine
    state, job_id, digest, held_options = reply[1:]
    if state != "done":
        raise ApiError(409, "idempotency_key_in_use",
                       "a request with this Idempotency-Key is still in progress; retry after it completes",
                       {"idempotency_key": key}, {"Retry-After": str(IN_USE_RETRY_AFTER_SECONDS)})
    return Held(key, job_id, digest, held_options, options)


def replay(held: Held, sha256: str, job_of: Callable[[str], dict[str, Any]]) -> Response:
    """Answer a repeated request whose body has digest `sha256`: 200 with the first job when body and options
    match, else 422."""
    if sha256 != held.digest or held.options != held.held_options:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request (other body or options); "
                       "use a new key for a new job",
                       {"idempotency_key": held.key, "job_id": held.job_id})
    job = job_of(held.job_id)
    return json_response(job, 200, {"Location": job["links"]["self"], REPLAYED_HEADER: "true"})
