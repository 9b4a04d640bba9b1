"""The words for where a job is: its states, a succeeded job's outcomes, the start decisions of a chunk,
and the states of a job's webhook delivery.

Every layer takes them from here: the job store and its Lua scripts (held to these by
tests/unit/jobs/test_lua_vocabulary.py), the API's metrics and OpenAPI document, and the client. They are
`StrEnum`s, so a member is the very string stored in Redis and sent in JSON, and compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A job's state: open (queued, running) until it closes (succeeded, failed, cancelled).

    An expired job has no state: it is gone, and its id answers 410 Gone.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
# After these nothing changes any more (but the job's expiry).
CLOSED_STATES = frozenset(JobState) - OPEN_STATES
# The states a job is closed to on request (close_job.lua sets the one it is given); it succeeds on its own.
CLOSING_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})


class JobOutcome(StrEnum):
    """How a succeeded job went: every row scored, or some rows are row errors."""

    ALL_ROWS_SCORED = "all_rows_scored"
    SOME_ROWS_FAILED = "some_rows_failed"


class StartAction(StrEnum):
    """What a worker is told to do with a chunk it was handed (start_chunk.lua's first reply element)."""

    RUN = "run"  # score it: the lease is taken, the attempt counted
    EXHAUSTED = "exhausted"  # attempts used up: fail its rows
    COMMITTED = "committed"  # another attempt committed it already
    CLOSED = "closed"  # the job is closed: skip it
    GONE = "gone"  # the job expired


class WebhookState(StrEnum):
    """Where the delivery of a closed job's webhook is (stored with the job as `webhook_state`)."""

    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"


FINAL_WEBHOOK_STATES = frozenset({WebhookState.DELIVERED, WebhookState.FAILED, WebhookState.REFUSED})
# What the job object shows for a callback while the job is still open (nothing is stored yet).
WEBHOOK_WAITING = "waiting"
