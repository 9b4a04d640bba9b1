"""Job webhooks: which callback URLs are allowed, and one signed delivery attempt to the resolved address.

A job with a callback URL gets one delivery when it reaches a final state (succeeded, failed, cancelled):
the store's `claim_webhook` script marks it `pending` once, and whoever closed the job queues the
`predictq.deliver_webhook` task. Each attempt is counted by a guarded script, so a task message delivered
twice (the broker redelivers long countdowns) never makes two attempts of the same number.

SSRF: the URL's host must match `PREDICTQ_WEBHOOK_ALLOWED_HOSTS`; its name is resolved once per attempt and
the connection goes to that exact address (Host header and TLS name stay the URL's), which must be a public
address unless it lies in an allowed network (`127.0.0.1/32`, say).
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson

from core.settings import Settings
from core.states import WebhookState
from core.webhooks import signed_headers
from jobs.job_store import JobStore
from jobs.view import render_job

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
RETRY_FACTOR = 4
MAX_RETRY_DELAY_SECONDS = 6 * 3600
# An attempt that started this long ago and recorded nothing died with its worker: its number may run again.
ATTEMPT_STALE_SECONDS = 120
ERROR_TEXT_LIMIT = 300

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class CallbackRefused(ValueError):
    """A callback URL (or the address its name resolves to) that predictq will not call."""


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks webhooks may go to: exact names, `*.suffix` patterns, IP addresses and networks."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Read the comma-separated PREDICTQ_WEBHOOK_ALLOWED_HOSTS value."""
        names, suffixes, networks = set(), [], []
        for entry in (part.strip().lower() for part in text.split(",")):
            if not entry:
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        """Is this URL host (a name or an IP literal) on the list?"""
        address = _ip(host)
        if address is not None:
            return any(address in network for network in self.networks)
        host = host.rstrip(".").lower()
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def address_allowed(self, address: Address) -> bool:
        """A resolved address: public ones always, others only inside an allowed network."""
        if any(address in network for network in self.networks):
            return True
        return address.is_global and not address.is_multicast


def _ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def check_callback_url(url: str, allow: AllowList) -> str:
    """`url` if it is an http(s) URL to an allowed host, else CallbackRefused saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CallbackRefused("callback_url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise CallbackRefused("callback_url must not carry credentials")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        raise CallbackRefused("callback_url has an invalid port") from None
    if not allow.host_allowed(parts.hostname):
        raise CallbackRefused(f"callback host {parts.hostname!r} is not in PREDICTQ_WEBHOOK_ALLOWED_HOSTS")
    address = _ip(parts.hostname)
    if address is not None and not allow.address_allowed(address):
        raise CallbackRefused(f"callback address {address} is private, loopback or link-local")
    return url


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (TCP)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def resolve_once(host: str, port: int, allow: AllowList, resolver: Resolver = system_resolver) -> str:
    """The address to connect to: the first the name resolves to, which must be allowed (else refused)."""
    literal = _ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except OSError as exc:
            raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise ConnectionError(f"{host} resolves to no address")
    chosen = ipaddress.ip_address(addresses[0])
    if not allow.address_allowed(chosen):
        raise CallbackRefused(f"{host} resolves to {chosen}, a private, loopback or link-local address")
    return str(chosen)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI and certificate checks for the URL's host name."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_to_address(url: str, address: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url` over a connection to `address`; returns the HTTP status (never follows redirects)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(address, parts.hostname or "", port, timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    try:
        conn.request("POST", path, body=body, headers={**headers, "Host": host_header or "",
                                                       "User-Agent": "predictq-webhooks"})
        response = conn.getresponse()
        response.read(64 * 1024)
        return response.status
    finally:
        conn.close()


def retry_delay(attempt: int, settings: Settings) -> int:
    """Seconds before attempt `attempt + 1`: the base delay, times 4 per attempt made, capped at 6 hours."""
    return int(min(settings.webhook_retry_seconds * RETRY_FACTOR ** (attempt - 1), MAX_RETRY_DELAY_SECONDS))


def event_body(job_id: str, fields: dict[str, str], now: float) -> bytes:
    """The delivery's JSON body: the event type, when the job ended, and the job object (as GET shows it)."""
    job = dict(render_job(job_id, fields, now))
    job.pop("webhook", None)  # changes between attempts; the signed body must not
    return orjson.dumps({
        "type": f"job.{job['state']}",
        "timestamp": job["finished_at"] or datetime.fromtimestamp(now, tz=UTC).isoformat(),
        "data": job,
    })


@dataclass(frozen=True)
class Attempt:
    """What one attempt did: `state` as recorded on the job, and the delay before the next one (or None)."""

    state: str
    retry_in: int | None = None


def deliver(store: JobStore, settings: Settings, job_id: str, attempt: int,
            resolver: Resolver = system_resolver, now: Callable[[], float] = time.time) -> Attempt:
    """Make attempt number `attempt` of the job's webhook, record how it went, and say whether to retry."""
    if not store.begin_webhook_attempt(job_id, attempt, now(), ATTEMPT_STALE_SECONDS):
        return Attempt("skipped")
    fields = store.fields(job_id)
    if fields is None:
        return Attempt("skipped")
    url = fields.get("callback_url", "")
    body = event_body(job_id, fields, now())
    headers = signed_headers(settings.webhook_secret, f"msg_{job_id}", body, now())
    allow = AllowList.parse(settings.webhook_allowed_hosts)
    status, error = 0, ""
    try:
        parts = urlsplit(check_callback_url(url, allow))
        address = resolve_once(parts.hostname or "", parts.port or 443, allow, resolver)
        status = post_to_address(url, address, body, headers, settings.webhook_timeout_seconds)
    except CallbackRefused as exc:
        log.warning("webhook of job %s refused: %s", job_id, exc)
        store.record_webhook(job_id, WebhookState.REFUSED, 0, str(exc)[:ERROR_TEXT_LIMIT])
        return Attempt(WebhookState.REFUSED)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
    if 200 <= status < 300:
        log.info("webhook of job %s delivered (attempt %s, HTTP %s)", job_id, attempt, status)
        store.record_webhook(job_id, WebhookState.DELIVERED, status, "")
        return Attempt(WebhookState.DELIVERED)
    error = error or f"HTTP {status}"
    if attempt >= settings.webhook_max_attempts:
        log.warning("webhook of job %s failed after %s attempts: %s", job_id, attempt, error)
        store.record_webhook(job_id, WebhookState.FAILED, status, error)
        return Attempt(WebhookState.FAILED)
    delay = retry_delay(attempt, settings)
    log.info("webhook of job %s attempt %s failed (%s); retrying in %ss", job_id, attempt, error, delay)
    store.record_webhook(job_id, WebhookState.RETRYING, status, error)
    return Attempt(WebhookState.RETRYING, delay)

