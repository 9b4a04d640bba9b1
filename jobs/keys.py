"""Job ids that carry their expiry time, and the names of every Redis key a job owns."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# kombu's Redis transport defaults (kombu.transport.redis): messages with a priority go to "<queue>\x06\x16<step>".
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
# A job id is "<base36 expiry epoch seconds>-<80 random bits in hex>": 13 base36 digits hold any 64-bit epoch second.
EXPIRY_DIGITS, RANDOM_HEX = 13, 20
JOB_ID_PATTERN = rf"([0-9a-z]{{1,{EXPIRY_DIGITS}}})-([0-9a-f]{{{RANDOM_HEX}}})"
JOB_ID_MAX_LENGTH = EXPIRY_DIGITS + 1 + RANDOM_HEX
_ID_RE = re.compile(JOB_ID_PATTERN)


def _base36(value: int) -> str:
    """Non-negative integer in lowercase base 36."""
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if value == 0:
            return out


def new_job_id(expires_at: int) -> str:
    """A fresh id `<base36 expiry epoch seconds>-<80 random bits>`: its expiry is readable with nothing stored."""
    return f"{_base36(expires_at)}-{secrets.token_hex(RANDOM_HEX // 2)}"


def id_expiry(job_id: str) -> int | None:
    """Expiry epoch seconds encoded in `job_id`, or None when the text is not a job id at all."""
    match = _ID_RE.fullmatch(job_id)
    return int(match.group(1), 36) if match else None


@dataclass(frozen=True)
class JobKeys:
    """Every key of one job; all of them expire at the same instant, the job's `expires_at`."""

    prefix: str
    job_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:job:{self.job_id}"

    @property
    def job(self) -> str:
        """Hash: state, counters, timestamps, options."""
        return self.base

    @property
    def committed(self) -> str:
        """Set of committed chunk indexes (the exactly-once guard)."""
        return f"{self.base}:committed"

    @property
    def chunks(self) -> str:
        """Hash chunk index -> "kind,bytes,records" of its staged input (records empty until a worker parses it)."""
        return f"{self.base}:chunks"

    @property
    def outputs(self) -> str:
        """Hash chunk index -> "token,records,has_result,has_errors" of the committed attempt's files."""
        return f"{self.base}:outputs"

    @property
    def attempts(self) -> str:
        """Hash chunk index -> number of times a worker started it."""
        return f"{self.base}:attempts"

    @property
    def leases(self) -> str:
        """Hash chunk index -> "hostname|pid|started_at|attempt" of the worker scoring it now."""
        return f"{self.base}:leases"

    @property
    def renewals(self) -> str:
        """Hash chunk index -> when the holder of its lease last renewed it (epoch seconds)."""
        return f"{self.base}:renewals"

    @property
    def reasons(self) -> str:
        """Hash chunk index -> last failure reason of an attempt."""
        return f"{self.base}:reasons"

    @property
    def summary(self) -> str:
        """Hash of the job's summary counters (jobs.summary), merged by each chunk's commit."""
        return f"{self.base}:summary"

    def all_fixed(self) -> list[str]:
        """The per-job keys whose names do not depend on a chunk index, job hash first."""
        return [self.job, self.committed, self.chunks, self.outputs, self.attempts, self.leases, self.renewals,
                self.reasons, self.summary]


def tenant_index(prefix: str, tenant: str) -> str:
    """Sorted set of one tenant's job ids scored by creation time in microseconds."""
    return f"{prefix}:tenant:{tenant}:jobs"


def active_index(prefix: str) -> str:
    """Sorted set of jobs not yet finished, scanned by the reaper and for backpressure."""
    return f"{prefix}:jobs:active"


def live_index(prefix: str) -> str:
    """Sorted set of every job not yet expired (open or closed), scored by its expiry epoch seconds."""
    return f"{prefix}:jobs:live"


def metrics_key(prefix: str) -> str:
    """Hash of cluster-wide counters (rows, chunks, chunk latency buckets) bumped by each chunk commit; no expiry."""
    return f"{prefix}:metrics"


def broker_queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu's Redis transport keeps for `queue`: the queue itself, then one per priority step."""
    return [queue] + [f"{queue}{KOMBU_PRIORITY_SEP}{step}" for step in KOMBU_PRIORITY_STEPS if step]


def reaper_lock(prefix: str) -> str:
    """Lock key so one reaper pass runs at a time across all workers."""
    return f"{prefix}:reaper:lock"
