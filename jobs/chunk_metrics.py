"""Cluster-wide chunk counters kept in one Redis hash: the field names, the latency buckets, and reading them back.

Every chunk commit bumps the hash inside the commit script itself, so a duplicate delivery (which the script
ignores) is never counted twice and the counters agree with the jobs' own `rows_scored`/`rows_failed`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Upper bounds (seconds, inclusive) of the chunk latency histogram; +Inf is implied after the last one.
CHUNK_SECONDS_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

ROWS_SCORED = "rows_scored"
ROWS_FAILED = "rows_failed"
CHUNKS_SCORED = "chunks_scored"
CHUNKS_FAILED = "chunks_failed"
SECONDS_SUM = "chunk_seconds_sum"
SECONDS_COUNT = "chunk_seconds_count"
BUCKET_PREFIX = "chunk_seconds_bucket:"
# Commits the commit script refused, by why: "duplicate" (another attempt committed the chunk first: a late or
# redelivered attempt), "closed" (the job was cancelled or failed meanwhile).
REFUSED_PREFIX = "commits_refused:"
REFUSED_REASONS = ("duplicate", "closed")


def le_text(bound: float) -> str:
    """A bucket bound as Prometheus writes its `le` label ("0.05", "1.0", "+Inf")."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def bucket_field(seconds: float) -> str:
    """The hash field of the one (non-cumulative) bucket an observation of `seconds` falls in."""
    position = bisect.bisect_left(CHUNK_SECONDS_BUCKETS, seconds)
    bound = CHUNK_SECONDS_BUCKETS[position] if position < len(CHUNK_SECONDS_BUCKETS) else math.inf
    return BUCKET_PREFIX + le_text(bound)


@dataclass(frozen=True)
class ChunkMetrics:
    """Counters since the metrics hash was created; `seconds_buckets` are cumulative (le, count), +Inf last."""

    rows_scored: int
    rows_failed: int
    chunks_scored: int
    chunks_failed: int
    seconds_buckets: list[tuple[str, int]]
    seconds_sum: float
    seconds_count: int
    commits_refused: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> ChunkMetrics:
        """Read the counters from the hash's fields (absent fields count zero)."""
        running = 0
        buckets = []
        for bound in (*CHUNK_SECONDS_BUCKETS, math.inf):
            running += int(fields.get(BUCKET_PREFIX + le_text(bound)) or 0)
            buckets.append((le_text(bound), running))
        return cls(
            rows_scored=int(fields.get(ROWS_SCORED) or 0),
            rows_failed=int(fields.get(ROWS_FAILED) or 0),
            chunks_scored=int(fields.get(CHUNKS_SCORED) or 0),
            chunks_failed=int(fields.get(CHUNKS_FAILED) or 0),
            seconds_buckets=buckets,
            seconds_sum=float(fields.get(SECONDS_SUM) or 0.0),
            seconds_count=int(fields.get(SECONDS_COUNT) or 0),
            commits_refused={why: int(fields.get(REFUSED_PREFIX + why) or 0) for why in REFUSED_REASONS},
        )
