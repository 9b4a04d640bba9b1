"""Faults survived: workers SIGKILLed again and again, a poison chunk, Redis restarted, the API killed.

Every test checks every row of its job: none lost, none duplicated, each phat equal to in-process scoring.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings
from model.ranges import parse_range, split_records
from model.synth import write_synth
from predictq.localredis import PrivateRedis
from tests.integration.summary_check import assert_summary_matches, read_input, summary_via_api

pytestmark = pytest.mark.slow

ROWS = 60_000
CHUNK_ROWS = 5_000
CHUNK_BYTES = 4_500_000  # about 4,800 synthetic CSV rows
CLOSED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def synth_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "rows.csv"
    write_synth(path, ROWS, seed=13)
    return path


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    """Short time limits; a lost chunk is requeued within seconds (its lease, 8 s, is no longer renewed)."""
    return dataclasses.replace(worker_settings, chunk_rows=CHUNK_ROWS, chunk_bytes=CHUNK_BYTES, task_soft_time_limit=10,
                               task_time_limit=12, upload_idle_seconds=4)


def poll_until_closed(service: Any, job_id: str, timeout: float = 240.0) -> dict[str, Any]:
    """Poll the job, riding out moments when Redis is unreachable, until it is closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = service.get("acme", job_id)
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(0.2)
            continue
        if job["state"] in CLOSED:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} not closed within {timeout}s")


def test_workers_sigkilled_mid_chunk_again_and_again(
    synth_csv: Path, celery_workers: Any, job_driver: Any, scorer: Any, worker_settings: Settings
) -> None:
    nodes = [celery_workers.start(), celery_workers.start()]
    driver = job_driver.with_settings(chunk_bytes=1_800_000)
    store = driver.service.store
    submitted: list[Any] = []
    upload = threading.Thread(target=lambda: submitted.append(driver.submit(synth_csv, "csv", scorer, pace=0.4)))
    # About 31 ranges over 12 s: workers parse and score while the upload streams, and die while they do
    # (a lease is held from before the parse to the commit, so kills land mid-parse as well as mid-score).
    upload.start()
    killed_chunks: set[int] = set()
    first_kill_during_upload = False
    deadline = time.monotonic() + 60
    while len(killed_chunks) < 3:
        assert time.monotonic() < deadline, f"only {len(killed_chunks)} chunks were caught in flight"
        job_id = next(iter(store.active_jobs()), None)
        leases = store.leases(job_id) if job_id else {}
        # Kill a worker while one of its pool processes holds a chunk's lease; never the same chunk twice,
        # which would be the poison-chunk test.
        victim = next(((index, node) for index, lease in leases.items()
                       if index not in killed_chunks and (node := celery_workers.owner_of(lease.pid)) in nodes), None)
        if victim is None:
            time.sleep(0.002)
            continue
        if not killed_chunks:
            first_kill_during_upload = upload.is_alive()
        celery_workers.kill(victim[1])
        killed_chunks.add(victim[0])
        nodes.remove(victim[1])
        nodes.append(celery_workers.start())
    upload.join(timeout=60)
    job = poll_until_closed(driver.service, submitted[0].job_id)
    reasons = set(driver.errors(submitted[0].job_id).column("message").to_pylist())
    assert (job["state"], job["outcome"], job["rows_done"], job["rows_failed"]) == (
        "succeeded", "all_rows_scored", ROWS, 0), reasons
    results, errors = driver.assert_every_row_once(submitted[0])
    # The summary counted each chunk once, however often its scoring was cut short.
    summary = summary_via_api(driver.service, submitted[0].job_id)
    assert_summary_matches(summary, read_input(synth_csv), results.to_pandas(), errors.to_pandas())
    assert first_kill_during_upload  # workers were scoring while the upload still streamed
    attempts = store.attempts(submitted[0].job_id)
    assert all(attempts[index] >= 2 for index in killed_chunks)  # each killed chunk really was scored again


def test_poison_chunk_ends_as_row_errors_after_bounded_attempts(
    synth_csv: Path, celery_workers: Any, job_driver: Any, scorer: Any, worker_settings: Settings
) -> None:
    poison = 4  # the last chunk, the rest of the body merged into it so each parse holds its lease long enough
    node = celery_workers.start(concurrency=2)
    service, store = job_driver.service, job_driver.service.store
    killed: list[int] = []
    stop = threading.Event()
    job_ids: list[str] = []

    def kill_whoever_starts_the_poison_chunk() -> None:
        while not stop.is_set():
            lease = store.leases(job_ids[0]).get(poison) if job_ids else None
            if lease is not None and lease.pid not in killed and celery_workers.owner_of(lease.pid) == node:
                os.kill(lease.pid, signal.SIGKILL)
                killed.append(lease.pid)
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_whoever_starts_the_poison_chunk, daemon=True)
    watcher.start()
    try:
        with synth_csv.open("rb") as stream:
            body = split_records(stream, "csv", target_bytes=CHUNK_BYTES, columns=list(scorer.required_columns))
            ranges = [b"".join(parts) for parts in body.ranges]
        ranges[poison:] = [b"".join(ranges[poison:])]
        counts = [parse_range(r, "csv", body.header, columns=scorer.required_columns).rows for r in ranges]
        job_ids.append(service.create("acme", fmt="csv", header=body.header)["id"])
        for index, data in enumerate(ranges):
            assert service.stage_range(job_ids[0], index, data, "csv")
        service.seal(job_ids[0], None, len(ranges))
        job = poll_until_closed(service, job_ids[0])
    finally:
        stop.set()
        watcher.join(timeout=5)
    job_id = job_ids[0]
    assert len(killed) == worker_settings.max_chunk_attempts
    poison_rows = list(range(sum(counts[:poison]), ROWS))
    assert (job["state"], job["outcome"]) == ("succeeded", "some_rows_failed")
    assert (job["rows_done"], job["rows_failed"]) == (ROWS, len(poison_rows))
    reference = job_driver.in_process(synth_csv, "csv", scorer, job_id=job_id)
    _, errors = job_driver.assert_every_row_once(reference)
    assert errors["row"].to_pylist() == poison_rows
    messages = set(errors["message"].to_pylist())
    assert len(messages) == 1
    message = messages.pop()
    assert message.startswith(f"chunk failed after {worker_settings.max_chunk_attempts} attempts: worker process ")
    assert f"process {killed[-1]} " in message
    assert store.attempts(job_id)[poison] == worker_settings.max_chunk_attempts + 1


def test_redis_restarted_mid_job_with_append_only_file(
    synth_csv: Path, celery_workers: Any, job_driver: Any, scorer: Any, worker_settings: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "redis-data"
    data_dir.mkdir()
    server = PrivateRedis(appendonly=True, workdir=data_dir).start()
    try:
        settings = dataclasses.replace(worker_settings, redis_url=server.url, chunk_bytes=900_000)
        driver = job_driver.with_settings(redis_url=server.url, chunk_bytes=900_000)
        submitted = driver.submit(synth_csv, "csv", scorer)  # 62 chunks staged before any worker runs
        celery_workers.start(settings=settings)
        deadline = time.monotonic() + 120
        while (before := driver.service.get("acme", submitted.job_id))["chunks_done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        server.kill()
        time.sleep(1.0)
        server = PrivateRedis(port=server.port, appendonly=True, workdir=data_dir).start()
        assert before["state"] == "running" and before["chunks_done"] < before["chunks_total"], before
        job = poll_until_closed(driver.service, submitted.job_id)
        if job["state"] == "succeeded":
            _, errors = driver.assert_every_row_once(submitted)
            assert errors.num_rows == job["rows_failed"] == 0
        else:
            assert job["state"] == "failed" and job["reason"], job
            driver.assert_scored_rows_exact(submitted)
    finally:
        celery_workers.stop_all()
        server.stop()


# Acts as the API: creates a job, stages `STAGED` chunks of the file, says so, then hangs mid-upload.
UPLOADER = textwrap.dedent(
    """
    import sys, time
    import redis
    from model.ranges import split_records
    from model.schema import REQUIRED_COLUMNS
    from core.settings import Settings
    from worker.dispatch import job_service

    settings = Settings.from_env()
    service = job_service(redis.Redis.from_url(settings.redis_url), settings)
    with open(sys.argv[1], "rb") as stream:
        body = split_records(stream, "csv", target_bytes=settings.chunk_bytes, columns=list(REQUIRED_COLUMNS))
        job_id = service.create("acme", fmt="csv", header=body.header)["id"]
        for index, parts in zip(range(int(sys.argv[2])), body.ranges):
            service.stage_range(job_id, index, parts, "csv")
    print(job_id, flush=True)
    time.sleep(600)
    """
)


def test_api_killed_mid_upload_is_failed_and_cleaned_by_the_reaper(
    synth_csv: Path, celery_workers: Any, job_driver: Any, scorer: Any, worker_env: dict[str, str]
) -> None:
    staged = 3
    celery_workers.start()
    uploader = subprocess.Popen([sys.executable, "-c", UPLOADER, str(synth_csv), str(staged)], env=worker_env,
                                stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert uploader.stdout is not None
        job_id = uploader.stdout.readline().decode().strip()
    finally:
        uploader.kill()
        uploader.wait(timeout=10)
    assert job_id, "the uploader did not create a job"
    job = poll_until_closed(job_driver.service, job_id, timeout=60)
    assert job["state"] == "failed" and job["reason"].startswith("upload interrupted"), job
    assert job["reason_code"] == "upload_incomplete" and job["upload_complete"] is False
    store = job_driver.service.store
    assert job_id not in store.active_jobs()
    # An upload that never ended keeps nothing: whatever was scored before the reaper stepped in is deleted
    # with it (no result of part of a body is shown), and a chunk still running commits nothing afterwards.
    assert job["upload"]["results_deleted"] is True
    assert job_driver.service.blobs.job_ids() == []
    assert job_driver.results(job_id).num_rows == 0
    assert store.summary_fields(job_id) == {}  # the job summary goes with the results it counted
