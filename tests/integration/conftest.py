"""Integration fixtures: real Celery worker processes against the session's private Redis.

Reusable by every integration test:
- `worker_settings`: Settings for this test (the session Redis, a queue of its own, small chunks, short
  reaper/time limits). Override fields with `dataclasses.replace` in a test-local fixture of the same name.
- `celery_workers`: a `CeleryWorkers` factory. `celery_workers.start()` runs
  `python -m celery -A worker.celery_app worker -Q <queue> --pool prefork --concurrency 1` with the settings
  exported as REDIS_URL / PREDICTQ_* and returns once the worker logged "ready"; `kill(node)` SIGKILLs it and
  its pool processes; every worker still running is stopped (SIGTERM, then SIGKILL) after the test.
- `job_service`: a JobService on those settings (tasks go through a real Celery producer).
- `job_driver`: a `JobDriver` that submits a file the way the API does (record ranges for CSV and NDJSON, parsed
  chunks for JSON arrays), scores it in-process too for comparison, polls a job to a state, fetches
  result/error tables and checks rows exactly once.
- `scorer`: the approved model in the test process.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis

from core.settings import Settings
from jobs.service import JobService
from jobs.staging import ERROR_SCHEMA
from model.ranges import parse_range, split_records
from model.readers import iter_chunks
from worker.dispatch import job_service as celery_job_service

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# Environment variable of each Settings field a worker needs (the README's configuration table).
ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "key_prefix": "PREDICTQ_KEY_PREFIX",
    "queue_name": "PREDICTQ_QUEUE",
    "model_path": "PREDICTQ_MODEL_PATH",
    "chunk_rows": "PREDICTQ_CHUNK_ROWS",
    "chunk_bytes": "PREDICTQ_CHUNK_BYTES",
    "store_uri": "PREDICTQ_STORE_URI",
    "store_reserve_bytes": "PREDICTQ_STORE_RESERVE_BYTES",
    "job_ttl_seconds": "PREDICTQ_JOB_TTL_SECONDS",
    "task_soft_time_limit": "PREDICTQ_TASK_SOFT_TIME_LIMIT",
    "task_time_limit": "PREDICTQ_TASK_TIME_LIMIT",
    "max_chunk_attempts": "PREDICTQ_MAX_CHUNK_ATTEMPTS",
    "chunk_lease_seconds": "PREDICTQ_CHUNK_LEASE_SECONDS",
    "redis_socket_timeout": "PREDICTQ_REDIS_SOCKET_TIMEOUT",
    "reaper_interval_seconds": "PREDICTQ_REAPER_INTERVAL_SECONDS",
    "stuck_job_seconds": "PREDICTQ_STUCK_JOB_SECONDS",
    "upload_idle_seconds": "PREDICTQ_UPLOAD_IDLE_SECONDS",
    "webhook_secret": "PREDICTQ_WEBHOOK_SECRET",
    "webhook_allowed_hosts": "PREDICTQ_WEBHOOK_ALLOWED_HOSTS",
    "webhook_max_attempts": "PREDICTQ_WEBHOOK_MAX_ATTEMPTS",
    "webhook_retry_seconds": "PREDICTQ_WEBHOOK_RETRY_SECONDS",
    "webhook_timeout_seconds": "PREDICTQ_WEBHOOK_TIMEOUT_SECONDS",
}


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` exported the way `Settings.from_env` reads them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    env |= {name: str(getattr(settings, attr)) for attr, name in ENV_NAMES.items()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parent_pid(pid: int) -> int | None:
    """Parent process id of `pid` from /proc, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the parent id is the second field after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


@dataclass
class CeleryWorkers:
    """Starts and stops real `celery worker` processes for one test."""

    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0

    def start(self, concurrency: int = 1, settings: Settings | None = None) -> str:
        """Start one worker (its own process group) and wait until it is ready; returns its node name."""
        settings = settings or self.settings
        self.started += 1
        node = f"w{self.started}-{uuid.uuid4().hex[:6]}@%h"
        log_path = self.log_dir / f"{node.split('@')[0]}.log"
        argv = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-Q", settings.queue_name, "--pool", "prefork", "--concurrency", str(concurrency),
            "-n", node, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env=settings_env(settings), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[node] = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker {node} exited with {process.returncode}: {self.log(node)[-3000:]}")
            if " ready." in self.log(node):
                return node
            time.sleep(0.1)
        raise RuntimeError(f"worker {node} not ready within {READY_TIMEOUT}s: {self.log(node)[-3000:]}")

    def log(self, node: str) -> str:
        """Everything the worker printed so far."""
        path = self.log_dir / f"{node.split('@')[0]}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, node: str) -> None:
        """SIGKILL the worker's main process and its pool processes at once (a machine loss)."""
        process = self.processes.pop(node)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def stop(self, node: str) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        process = self.processes.pop(node)
        if process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def owner_of(self, pid: int) -> str | None:
        """The node whose pool process (or main process) is `pid`, or None when it is not one of ours."""
        parent = parent_pid(pid)
        for node, process in self.processes.items():
            if process.poll() is None and process.pid in (pid, parent):
                return node
        return None

    def stop_all(self) -> None:
        """Stop every worker this object started."""
        for node in list(self.processes):
            self.stop(node)


@pytest.fixture
def worker_settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings shared by the test and its workers: a private queue and blob store, small chunks, short timers."""
    return dataclasses.replace(
        Settings(),
        redis_url=redis_url,
        queue_name=f"predictq-test-{uuid.uuid4().hex[:8]}",
        store_uri=str(tmp_path / "store"),
        store_reserve_bytes=0,
        chunk_rows=5_000,
        chunk_bytes=4_000_000,
        task_soft_time_limit=20,
        task_time_limit=25,
        max_chunk_attempts=3,
        chunk_lease_seconds=8,  # a killed worker's chunk comes back within seconds
        redis_socket_timeout=4,
        reaper_interval_seconds=1,
        stuck_job_seconds=240,
        upload_idle_seconds=240,
    ).validated()


@pytest.fixture
def celery_workers(worker_settings: Settings, tmp_path: Path) -> Iterator[CeleryWorkers]:
    """Factory of real Celery workers; all are stopped after the test (logs in the test's tmp_path)."""
    workers = CeleryWorkers(worker_settings, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
def worker_env(worker_settings: Settings) -> dict[str, str]:
    """The environment a worker (or any process acting as the service) gets for `worker_settings`."""
    return settings_env(worker_settings)


@pytest.fixture
def job_service(worker_settings: Settings) -> JobService:
    """The API-side JobService on the test's settings."""
    return celery_job_service(redis.Redis.from_url(worker_settings.redis_url), worker_settings)


@dataclass
class Submitted:
    """A job submitted from a file, with what in-process scoring of the same rows gave."""

    job_id: str
    rows: int
    expected: pa.Table
    expected_failed_rows: int
    failed_rows: list[int] = field(default_factory=list)

    def first(self, rows: int) -> Submitted:
        """The same reference cut to its first `rows` records (what was staged)."""
        failed = [r for r in self.failed_rows if r < rows]
        kept = self.expected.filter(pc.less(self.expected["row"], rows))
        return Submitted(self.job_id, rows, kept, len(failed), failed)


def _open(source: Path | bytes) -> Any:
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)


class JobDriver:
    """Submit, poll and fetch jobs through a JobService the way the API does (test-side helper)."""

    def __init__(self, service: JobService) -> None:
        self.service = service

    def with_settings(self, **changes: Any) -> JobDriver:
        """A driver whose JobService uses these settings changes (chunk_rows, job_ttl_seconds, ...)."""
        settings = dataclasses.replace(self.service.settings, **changes)
        same_server = settings.redis_url == self.service.settings.redis_url
        client = self.service.store.redis if same_server else redis.Redis.from_url(settings.redis_url)
        return JobDriver(celery_job_service(client, settings))

    def submit(self, source: Path | bytes, fmt: str, scorer: Any, *, tenant: str = "acme",
               passthrough: str | None = None, seal: bool = True, max_chunks: int | None = None,
               pace: float = 0.0) -> Submitted:
        """Create a job and stage `source` as the API does, and score the same rows in-process for comparison.

        CSV and NDJSON are cut into ranges of `chunk_bytes` (the workers parse them); a JSON array is parsed
        here in chunks of `chunk_rows`. `pace` seconds pass between chunks, like a slow client upload (workers
        score while it streams).
        """
        if fmt == "json":
            job_id = self.service.create(tenant, fmt=fmt, passthrough=passthrough)["id"]
            return self._read(source, fmt, scorer, job_id, passthrough=passthrough, seal=seal,
                              max_chunks=max_chunks, pace=pace)
        service = self.service
        staged = 0
        with _open(source) as stream:
            body = split_records(stream, fmt, target_bytes=service.settings.chunk_bytes,
                                 columns=list(scorer.required_columns), passthrough=passthrough)
            job_id = service.create(tenant, fmt=fmt, passthrough=passthrough, header=body.header)["id"]
            chunks = 0
            for parts in body.ranges:
                if max_chunks is not None and chunks == max_chunks:
                    break
                assert service.stage_range(job_id, chunks, parts, fmt)
                staged += parse_range(b"".join(parts), fmt, body.header, columns=scorer.required_columns,
                                      passthrough=passthrough).rows
                chunks += 1
                time.sleep(pace)
        if seal:
            service.seal(job_id, None, chunks)
        reference = self._read(source, fmt, scorer, job_id, passthrough=passthrough, stage=False)
        return reference.first(staged)

    def in_process(self, source: Path | bytes, fmt: str, scorer: Any, *, max_chunks: int | None = None,
                   job_id: str = "") -> Submitted:
        """The in-process reference for `source` (every row, numbered in the body), staging nothing."""
        return self._read(source, fmt, scorer, job_id, max_chunks=max_chunks, stage=False)

    def _read(self, source: Path | bytes, fmt: str, scorer: Any, job_id: str, *, passthrough: str | None = None,
              seal: bool = True, max_chunks: int | None = None, stage: bool = True, pace: float = 0.0) -> Submitted:
        """Read `source` in chunks of records; stage each (unless not `stage`) and score it in-process."""
        service = self.service
        expected, failed_rows, rows, chunks = [], [], 0, 0
        with _open(source) as stream:
            read = iter_chunks(stream, fmt, columns=scorer.required_columns, chunk_rows=service.settings.chunk_rows,
                               passthrough=passthrough)
            for index, chunk in enumerate(read):
                if max_chunks is not None and index == max_chunks:
                    break
                if stage:
                    assert service.stage_chunk(job_id, index, chunk.table, chunk.errors)
                    time.sleep(pace)
                scored = scorer.score_frame(chunk.table)
                expected.append(scored.to_arrow())
                failed_rows += sorted({e.row for e in [*chunk.errors, *scored.errors]})
                rows, chunks = rows + chunk.rows, chunks + 1
        if stage and seal:
            service.seal(job_id, rows, chunks)
        return Submitted(job_id, rows, pa.concat_tables(expected), len(failed_rows), failed_rows)

    def wait_for_state(self, job_id: str, states: set[str], *, tenant: str = "acme",
                       timeout: float = 240.0) -> dict[str, Any]:
        """Poll the job until its state is in `states`; fail the test with the last job object on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.service.get(tenant, job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job never reached {states} in {timeout}s: {job}")
            time.sleep(0.2)

    def results(self, job_id: str, tenant: str = "acme") -> pa.Table:
        """Every committed result row of the job, in the order the service yields them."""
        tables = list(self.service.iter_result_tables(tenant, job_id))
        return pa.concat_tables(tables) if tables else pa.table({"row": pa.array([], pa.int64())})

    def errors(self, job_id: str, tenant: str = "acme") -> pa.Table:
        """Every committed row error of the job."""
        tables = list(self.service.iter_error_tables(tenant, job_id))
        return pa.concat_tables(tables) if tables else ERROR_SCHEMA.empty_table()

    def assert_scored_rows_exact(self, submitted: Submitted, tenant: str = "acme") -> pa.Table:
        """Result rows are unique, in input order, and equal to in-process scoring of the same rows."""
        results = self.results(submitted.job_id, tenant)
        scored = results["row"].to_numpy()
        assert np.all(np.diff(scored) > 0), "a result row appears twice or out of input order"
        self.assert_exact(results, submitted.expected.filter(pc.is_in(submitted.expected["row"], pa.array(scored))))
        return results

    def assert_every_row_once(self, submitted: Submitted, tenant: str = "acme") -> tuple[pa.Table, pa.Table]:
        """Results and errors together hold every input row exactly once; scored rows equal in-process scores."""
        results = self.assert_scored_rows_exact(submitted, tenant)
        errors = self.errors(submitted.job_id, tenant)
        failed = np.unique(errors["row"].to_numpy())
        everything = np.sort(np.concatenate([results["row"].to_numpy(), failed]))
        assert everything.tolist() == list(range(submitted.rows)), "rows lost, or both scored and failed"
        return results, errors

    @staticmethod
    def assert_exact(got: pa.Table, expected: pa.Table) -> None:
        """Every expected row exactly once, in input order, with the same scores as in-process scoring."""
        rows = got["row"].to_numpy()
        assert len(rows) == len(set(rows.tolist())), "a row appears twice"
        assert rows.tolist() == expected["row"].to_pylist(), "rows missing, extra or out of order"
        assert got.select(expected.column_names).equals(expected), "scores differ from in-process scoring"


@pytest.fixture
def job_driver(job_service: JobService) -> JobDriver:
    """Submit/poll/fetch helper on the test's JobService."""
    return JobDriver(job_service)


@pytest.fixture(scope="session")
def scorer() -> Any:
    """The approved model in the test process (the reference for in-process scoring)."""
    from model.scoring import load_scorer

    return load_scorer()
