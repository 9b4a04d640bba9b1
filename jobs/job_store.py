"""The job store: every read and write of job state in Redis, each multi-key change in one Lua script."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis

from core.clock import Clock, system_clock
from core.states import CLOSED_STATES, JobState, StartAction, WebhookState
from jobs.chunk_metrics import ChunkMetrics, bucket_field
from jobs.keys import JobKeys, active_index, live_index, metrics_key, new_job_id, tenant_index
from jobs.summary import ChunkCounters


def connect(url: str, socket_timeout: float, **kwargs: Any) -> redis.Redis:
    """A pooled client whose connects and commands fail after `socket_timeout` seconds instead of waiting on a
    dead connection (a host cut off from Redis), with TCP keepalive on. A command that failed is not retried
    here: a timed-out script may have run, and only its caller knows whether running it again is safe."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                                socket_keepalive=True, **kwargs)


@cache
def _script_text(name: str) -> str:
    """Source of lua/<name>.lua with the shared helpers prepended."""
    folder = resources.files("jobs") / "lua"
    return (folder / "_common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


def _text(value: Any) -> str:
    """Redis reply (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Lease:
    """Who is scoring a chunk right now: the worker's host and process id, since when, which attempt."""

    hostname: str
    pid: int
    started_at: float
    attempt: int
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Lease:
        """Parse "hostname|pid|started_at|attempt"."""
        hostname, pid, started_at, attempt = raw.rsplit("|", 3)
        return cls(hostname, int(pid), float(started_at), int(attempt), raw)


@dataclass(frozen=True)
class StagedChunk:
    """A chunk as staged: the kind of its input file, its size, and its records when the API counted them."""

    kind: str
    size: int
    records: int | None

    @classmethod
    def parse(cls, raw: str) -> StagedChunk:
        """Parse "kind,bytes,records" (records empty when only a worker's parse counts them)."""
        kind, size, records = raw.split(",")
        return cls(kind, int(size), int(records) if records else None)


@dataclass(frozen=True)
class ChunkOutput:
    """The files one attempt wrote for a chunk (named by its token) and the chunk's record count."""

    token: str
    records: int
    has_result: bool
    has_errors: bool

    @classmethod
    def parse(cls, raw: str) -> ChunkOutput:
        """Parse "token,records,has_result,has_errors"."""
        token, records, has_result, has_errors = raw.split(",")
        return cls(token, int(records), has_result == "1", has_errors == "1")

    def text(self) -> str:
        """The form `parse` reads."""
        return f"{self.token},{self.records},{int(self.has_result)},{int(self.has_errors)}"


@dataclass(frozen=True)
class StartDecision:
    """What a worker should do with a chunk it was handed (the outcome of `JobStore.start_chunk`)."""

    action: StartAction
    attempt: int = 0
    reason: str = ""


class JobStore:
    """Job state in Redis under `prefix`; needs a client with `decode_responses=False` (payloads are binary)."""

    def __init__(self, client: redis.Redis, prefix: str, on_closed: Callable[[str], None] | None = None,
                 clock: Clock = system_clock) -> None:
        """`on_closed(job_id)` is called once per job with a callback URL, by whichever call closed it
        (seal, close, or the commit of its last chunk), to queue the job's webhook. `clock` gives every time
        the store records (the Lua scripts take "now" as an argument, never Redis's TIME), and the expiry it
        sets; the reaper and the job service judge ages by the same clock."""
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the job store needs a Redis client with decode_responses=False")
        self.redis = client
        self.prefix = prefix
        self.on_closed = on_closed
        self.clock = clock
        self._scripts = {
            name: client.register_script(_script_text(name))
            for name in ("create_job", "stage_chunk", "start_chunk", "commit_chunk", "seal_job", "close_job",
                         "release_lease", "renew_lease", "mark_requeued", "mark_purged", "touch_upload",
                         "claim_webhook", "begin_webhook_attempt")
        }

    def keys(self, job_id: str) -> JobKeys:
        """Key names of one job."""
        return JobKeys(self.prefix, job_id)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    def create(self, tenant: str, fields: dict[str, str], ttl_seconds: int) -> tuple[str, float, int]:
        """Store a new queued job; returns (job id, created_at, expires_at epoch seconds)."""
        now = self.clock()
        expires_at = int(now) + ttl_seconds
        job_id = new_job_id(expires_at)
        created_us = int(now * 1_000_000)
        record = {**fields, "tenant": tenant, "state": JobState.QUEUED, "created_at": repr(now),
                  "expires_at": str(expires_at), "sealed": "0", "upload_heartbeat": repr(now),
                  "last_activity": repr(now)}
        flat = [item for pair in record.items() for item in pair]
        trim_before_us = created_us - ttl_seconds * 1_000_000
        self._run(
            "create_job",
            [self.keys(job_id).job, tenant_index(self.prefix, tenant), active_index(self.prefix),
             live_index(self.prefix)],
            [job_id, created_us, expires_at, int(now * 1000), trim_before_us, *flat],
        )
        return job_id, now, expires_at

    def stage(self, job_id: str, index: int, kind: str, size: int, records: int | None) -> str:
        """Register a chunk whose input is in the blob store; 'staged', 'duplicate', 'sealed', a closed state,
        or 'gone'."""
        k = self.keys(job_id)
        reply = self._run("stage_chunk", [k.job, k.chunks],
                          [index, kind, size, "" if records is None else records, repr(self.clock())])
        return _text(reply)

    def seal(self, job_id: str, rows_total: int | None, chunks_total: int,
             record: Mapping[str, str | int] | None = None) -> str:
        """Mark the upload complete (rows_total None: the workers count them), adding `record`'s fields (what
        arrived) to the job in the same step; returns the state after it (or 'gone')."""
        k = self.keys(job_id)
        flat = [str(item) for pair in (record or {}).items() for item in pair]
        reply = self._run("seal_job", [k.job, active_index(self.prefix)],
                          [job_id, "" if rows_total is None else rows_total, chunks_total, repr(self.clock()),
                           *flat])
        return self._after(job_id, _text(reply))

    def close(self, job_id: str, state: JobState, code: str, reason: str, *, purge: bool = False,
              record: Mapping[str, str | int] | None = None) -> str:
        """Move an open job to `state` (cancelled or failed) with a stable reason `code` and a message.

        `purge` also forgets what was already scored (for a job whose input never arrived whole); `record`
        adds fields to the job hash in the same step. Returns the state after it (or 'gone'). The job's files
        are the caller's to delete (`jobs.lifecycle`).
        """
        k = self.keys(job_id)
        flat = [str(item) for pair in (record or {}).items() for item in pair]
        reply = self._run("close_job", [k.job, active_index(self.prefix), k.outputs, k.summary],
                          [job_id, state, code, reason, repr(self.clock()), "1" if purge else "0", *flat])
        return self._after(job_id, _text(reply))

    def start_chunk(
        self, job_id: str, index: int, lease: str, max_attempts: int, model: tuple[str, str]
    ) -> StartDecision:
        """Count an attempt and take the chunk's lease, or say why the chunk must not be scored."""
        k = self.keys(job_id)
        reply = self._run("start_chunk", [k.job, k.committed, k.attempts, k.leases, k.reasons],
                          [index, lease, repr(self.clock()), max_attempts, model[0], model[1]])
        action = StartAction(_text(reply[0]))
        if action == StartAction.RUN:
            return StartDecision(action, int(reply[1]))
        if action == StartAction.EXHAUSTED:
            return StartDecision(action, int(reply[1]), _text(reply[2]))
        return StartDecision(action, 0, _text(reply[1]) if len(reply) > 1 else "")

    def commit_chunk(self, job_id: str, index: int, output: ChunkOutput, rows_scored: int, rows_failed: int,
                     size: int, *, seconds: float | None, summary: ChunkCounters | None = None) -> str:
        """Commit a chunk's outcome exactly once: 'committed', 'finished', 'ignored', a closed state, or 'gone'.

        `output` names the attempt's files (already written); `size` is the chunk's staged input bytes.
        `seconds` is the time spent scoring it (a chunk latency observation), None for a chunk failed without
        being scored; the cluster-wide metrics hash is bumped by the same script, once. `summary` is what the
        chunk adds to the job's summary hash, merged by the same script, once.
        """
        k = self.keys(job_id)
        timing = ["", ""] if seconds is None else [repr(float(seconds)), bucket_field(seconds)]
        keys = [k.job, k.committed, k.outputs, k.leases, active_index(self.prefix), metrics_key(self.prefix)]
        args = [job_id, index, output.text(), rows_scored, rows_failed, output.records, size, repr(self.clock()),
                *timing]
        if summary is not None:
            keys, args = [*keys, k.summary], [*args, *summary.as_args()]
        outcome = _text(self._run("commit_chunk", keys, args))
        # Only the commit that finished the job closed it; other closed answers mean someone else did.
        return self._after(job_id, outcome) if outcome == "finished" else outcome

    def _after(self, job_id: str, outcome: str) -> str:
        """Queue the job's webhook when `outcome` says it is closed now (at most once per job: a Lua claim)."""
        if self.on_closed is not None and outcome in CLOSED_STATES | {"finished"} and self.claim_webhook(job_id):
            self.on_closed(job_id)
        return outcome

    def claim_webhook(self, job_id: str) -> bool:
        """True for the one caller that must queue the closed job's webhook (False: no callback, or claimed)."""
        return bool(self._run("claim_webhook", [self.keys(job_id).job], []))

    def begin_webhook_attempt(self, job_id: str, attempt: int, now: float, stale_after: float) -> bool:
        """Count delivery attempt `attempt`; False for a duplicate message or a delivery already over."""
        return bool(self._run("begin_webhook_attempt", [self.keys(job_id).job], [attempt, repr(now), stale_after]))

    def record_webhook(self, job_id: str, state: WebhookState, status: int, error: str) -> None:
        """Record how the last delivery attempt went (never recreates an expired job)."""
        if self.redis.exists(self.keys(job_id).job):
            self.redis.hset(self.keys(job_id).job, mapping={
                "webhook_state": state, "webhook_last_status": status, "webhook_last_error": error})

    def release_lease(self, job_id: str, index: int, lease: str, reason: str) -> bool:
        """Drop the chunk's lease if it is still `lease` (full text), recording why the attempt ended."""
        k = self.keys(job_id)
        return bool(self._run("release_lease", [k.leases, k.reasons], [index, lease, reason]))

    def renew_lease(self, job_id: str, index: int, lease: str) -> bool:
        """Note that the holder of the chunk's lease `lease` (full text) is alive; False when it holds it no more."""
        k = self.keys(job_id)
        return bool(self._run("renew_lease", [k.leases, k.renewals], [index, lease, repr(self.clock())]))

    def lease_renewals(self, job_id: str) -> dict[int, float]:
        """When each chunk's lease was last renewed (chunks whose lease was never renewed are absent)."""
        raw = self.redis.hgetall(self.keys(job_id).renewals)
        return {int(_text(i)): float(_text(v)) for i, v in raw.items()}

    def touch_upload(self, job_id: str) -> bool:
        """Refresh an open upload's heartbeat (False when the job is sealed, closed or gone)."""
        return bool(self._run("touch_upload", [self.keys(job_id).job], [repr(self.clock())]))

    def mark_requeued(self, job_id: str) -> bool:
        """Note that the job's orphaned chunks were requeued now (False when the job is gone)."""
        return bool(self._run("mark_requeued", [self.keys(job_id).job], [repr(self.clock())]))

    def request_id(self, job_id: str) -> str | None:
        """The id of the request that submitted the job (for log lines), or None."""
        raw = self.redis.hget(self.keys(job_id).job, "request_id")
        return _text(raw) if raw else None

    def mark_purged(self, job_id: str) -> bool:
        """Forget the job's results (their files are deleted by the caller) and note when (False when gone)."""
        k = self.keys(job_id)
        return bool(self._run("mark_purged", [k.job, k.outputs], [repr(self.clock())]))

    def fields(self, job_id: str) -> dict[str, str] | None:
        """The job hash as text, or None when no such job is stored."""
        raw = self.redis.hgetall(self.keys(job_id).job)
        return {_text(f): _text(v) for f, v in raw.items()} if raw else None

    def many_fields(self, job_ids: list[str]) -> list[dict[str, str] | None]:
        """`fields` of several jobs in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys(job_id).job)
        return [{_text(f): _text(v) for f, v in raw.items()} if raw else None for raw in pipe.execute()]

    def chunk(self, job_id: str, index: int) -> StagedChunk | None:
        """What was recorded when the chunk was staged, or None."""
        raw = self.redis.hget(self.keys(job_id).chunks, index)
        return None if raw is None else StagedChunk.parse(_text(raw))

    def staged_indexes(self, job_id: str) -> list[int]:
        """Indexes of every chunk staged so far, ascending."""
        return sorted(int(_text(i)) for i in self.redis.hkeys(self.keys(job_id).chunks))

    def summary_fields(self, job_id: str) -> dict[str, str]:
        """The job's merged summary counters as text (empty before any chunk committed)."""
        return {_text(f): _text(v) for f, v in self.redis.hgetall(self.keys(job_id).summary).items()}

    def committed(self, job_id: str) -> list[int]:
        """Indexes of committed chunks, ascending."""
        return sorted(int(_text(i)) for i in self.redis.smembers(self.keys(job_id).committed))

    def outputs(self, job_id: str) -> dict[int, ChunkOutput]:
        """The committed output of each committed chunk."""
        raw = self.redis.hgetall(self.keys(job_id).outputs)
        return {int(_text(i)): ChunkOutput.parse(_text(v)) for i, v in raw.items()}

    def leases(self, job_id: str) -> dict[int, Lease]:
        """Chunks being scored now and who holds each."""
        raw = self.redis.hgetall(self.keys(job_id).leases)
        return {int(_text(i)): Lease.parse(_text(v)) for i, v in raw.items()}

    def attempts(self, job_id: str) -> dict[int, int]:
        """How many times each chunk was started."""
        return {int(_text(i)): int(v) for i, v in self.redis.hgetall(self.keys(job_id).attempts).items()}

    def tenant_page(self, tenant: str, max_score: str, count: int) -> list[tuple[str, int]]:
        """Up to `count` (job id, created_us) of a tenant, newest first, with score at most `max_score`."""
        rows = self.redis.zrevrangebyscore(tenant_index(self.prefix, tenant), max_score, "-inf", start=0, num=count,
                                           withscores=True)
        return [(_text(member), int(score)) for member, score in rows]

    def active_jobs(self) -> list[str]:
        """Ids of jobs not yet closed (the reaper's and backpressure's working set)."""
        return [_text(m) for m in self.redis.zrange(active_index(self.prefix), 0, -1)]

    def state_counts(self) -> dict[str, int]:
        """Live (unexpired) jobs by state; forgets expired ones from the live index first."""
        live = live_index(self.prefix)
        self.redis.zremrangebyscore(live, "-inf", int(self.clock()))
        job_ids = [_text(m) for m in self.redis.zrange(live, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys(job_id).job, "state")
        return dict(Counter(_text(state) for state in pipe.execute() if state is not None))

    def chunk_metrics(self) -> ChunkMetrics:
        """The cluster-wide chunk counters bumped by every commit."""
        raw = self.redis.hgetall(metrics_key(self.prefix))
        return ChunkMetrics.from_hash({_text(f): _text(v) for f, v in raw.items()})

    def last_cluster_commit(self) -> float:
        """When any worker last committed any chunk (epoch seconds; 0.0 when none ever did)."""
        raw = self.redis.hget(metrics_key(self.prefix), "last_commit")
        return float(_text(raw)) if raw else 0.0

    def forget_active(self, job_id: str) -> None:
        """Drop a job from the active index (it expired or closed)."""
        self.redis.zrem(active_index(self.prefix), job_id)
