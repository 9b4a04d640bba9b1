"""Jobs end to end through JobService and real Celery workers: results equal in-process scoring, in order."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis

from core.settings import Settings
from jobs.errors import JobExpired
from jobs.keys import metrics_key, reaper_lock
from model.synth import write_synth

SYNTH_ROWS = 100_000


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """100,000 synthetic rows as CSV and as a JSON array."""
    folder = tmp_path_factory.mktemp("synth100k")
    files = {"csv": folder / "rows.csv", "json": folder / "rows.json"}
    for path in files.values():
        write_synth(path, SYNTH_ROWS, seed=26)
    return files


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=10_000, chunk_bytes=9_000_000)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_synthetic_rows_score_like_in_process(
    fmt: str, synth_files: dict[str, Path], celery_workers: Any, job_driver: Any, scorer: Any
) -> None:
    celery_workers.start(concurrency=2)
    submitted = job_driver.submit(synth_files[fmt], fmt, scorer)
    job = job_driver.wait_for_state(submitted.job_id, {"succeeded", "failed", "cancelled"})
    assert (job["state"], job["outcome"]) == ("succeeded", "all_rows_scored")
    assert (job["rows_total"], job["rows_done"], job["rows_failed"]) == (SYNTH_ROWS, SYNTH_ROWS, 0)
    assert (job["chunks_done"], job["progress"]) == (job["chunks_total"], 1.0)
    assert job["chunks_total"] >= 10
    assert job["model"] == {"version": scorer.version, "sha256": scorer.sha256}
    job_driver.assert_exact(job_driver.results(submitted.job_id), submitted.expected)
    client = job_driver.service.store.redis
    prefix = job_driver.service.settings.key_prefix
    # The cluster-wide metrics hash is the one key meant to outlive every job.
    keys = [key for key in client.keys(f"{prefix}:*") if key.decode() != metrics_key(prefix)]
    ttl_ms = job_driver.service.settings.job_ttl_seconds * 1000
    left = {key.decode(): client.pttl(key) for key in keys}
    left = {key: ms for key, ms in left.items() if ms != -2}  # -2: gone since it was listed (a short-lived lock)
    out_of_range = {key: ms for key, ms in left.items() if not 0 < ms <= ttl_ms}
    assert left and not out_of_range, out_of_range
    blobs = job_driver.service.blobs
    assert blobs.staged_files(submitted.job_id) == []  # each went when its chunk committed
    committed = job_driver.service.store.outputs(submitted.job_id)
    names = {path.rsplit("/", 1)[1] for path in blobs.output_files(submitted.job_id)}
    assert names == {f"{i}.{o.token}.res.arrow" for i, o in committed.items()}  # no file of a lost attempt


@pytest.mark.reference
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_real_rows_score_like_in_process(
    fmt: str, reference_dir: Path, celery_workers: Any, job_driver: Any, scorer: Any
) -> None:
    body = (reference_dir / "exercise_26_test_rows_0_999.json").read_bytes()
    if fmt == "csv":
        body = pd.DataFrame(orjson.loads(body)).to_csv(index=False).encode()
    celery_workers.start()
    driver = job_driver.with_settings(chunk_rows=150, chunk_bytes=len(body) // 7)
    submitted = driver.submit(body, fmt, scorer, passthrough="x0")
    job = driver.wait_for_state(submitted.job_id, {"succeeded", "failed", "cancelled"})
    assert (job["state"], job["rows_total"]) == ("succeeded", 1000)
    assert 7 <= job["chunks_total"] <= 8
    assert job["rows_failed"] == submitted.expected_failed_rows
    results, _ = driver.assert_every_row_once(submitted)
    reference = pd.read_csv(reference_dir / "reference_phat_0_999.csv")
    scored = reference.set_index("row").loc[results["row"].to_numpy(), "phat"].to_numpy()
    assert abs(results["phat"].to_numpy() - scored).max() <= 1e-12
    assert "x0" in results.column_names


def test_a_real_job_is_counted_once_in_the_metrics_and_the_pool_inherits_the_model(
    synth_files: dict[str, Path], celery_workers: Any, job_driver: Any, scorer: Any
) -> None:
    driver = job_driver.with_settings(chunk_bytes=1_800_000)
    before = driver.service.metrics()
    node = celery_workers.start(concurrency=2)
    submitted = driver.submit(synth_files["csv"], "csv", scorer, max_chunks=3)
    job = driver.wait_for_state(submitted.job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
    assert (job["state"], job["rows_done"]) == ("succeeded", submitted.rows)
    after = driver.service.metrics()
    delta = {name: after[name] - before[name] for name in ("rows_scored", "rows_failed", "chunks_scored",
                                                           "chunks_failed", "seconds_count")}
    assert delta["rows_scored"] + delta["rows_failed"] == submitted.rows > 5_000
    assert delta["rows_failed"] == job["rows_failed"]
    assert (delta["chunks_scored"], delta["chunks_failed"], delta["seconds_count"]) == (3, 0, 3)
    assert driver.service.state_counts().get("succeeded", 0) >= 1
    # The model is loaded once, by the main process before the pool forks; pool processes score with it.
    # A task logs its chunk just after the commit the job's state shows: give the last line a moment.
    deadline = time.monotonic() + 30
    while celery_workers.log(node).count(f"job {submitted.job_id} chunk") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = celery_workers.log(node).splitlines()
    loads = [line for line in lines if f"model {scorer.version} (sha256 {scorer.sha256}) loaded" in line]
    assert len(loads) == 1 and "/MainProcess]" in loads[0], loads
    scored = [line for line in lines if f"job {submitted.job_id} chunk" in line]
    assert len(scored) == 3 and all("/ForkPoolWorker-" in line for line in scored), scored


def test_partial_results_while_running_then_cancel(
    synth_files: dict[str, Path], celery_workers: Any, job_driver: Any, scorer: Any, worker_settings: Settings
) -> None:
    driver = job_driver.with_settings(chunk_bytes=1_800_000)
    submitted = driver.submit(synth_files["csv"], "csv", scorer)  # 52 chunks, staged before any worker runs
    celery_workers.start()
    deadline = time.monotonic() + 120
    while (job := driver.service.get("acme", submitted.job_id))["chunks_done"] < 3:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    partial = driver.results(submitted.job_id)
    assert 0 < partial.num_rows < SYNTH_ROWS
    driver.assert_exact(partial, rows_of(submitted.expected, partial))

    assert driver.service.cancel("acme", submitted.job_id)["state"] == "cancelled"
    client = driver.service.store.redis
    deadline = time.monotonic() + 60
    while client.llen(worker_settings.queue_name) or driver.service.store.leases(submitted.job_id):
        assert time.monotonic() < deadline, "the worker did not drain the skipped chunks"
        time.sleep(0.1)
    job = driver.service.get("acme", submitted.job_id)
    assert job["state"] == "cancelled" and job["chunks_done"] < job["chunks_total"]
    final = driver.results(submitted.job_id)
    assert final.num_rows == job["rows_done"] - job["rows_failed"] >= partial.num_rows
    driver.assert_exact(final, rows_of(submitted.expected, final))
    assert driver.service.blobs.staged_files(submitted.job_id) == []  # the skipped chunks' inputs went at once


def test_expired_job_answers_410_and_leaves_no_keys(
    celery_workers: Any, job_driver: Any, scorer: Any, synth_files: dict[str, Path], worker_settings: Settings
) -> None:
    celery_workers.start()
    driver = job_driver.with_settings(job_ttl_seconds=20, chunk_bytes=1_800_000)
    submitted = driver.submit(synth_files["csv"], "csv", scorer, max_chunks=3)
    job = driver.wait_for_state(submitted.job_id, {"succeeded"}, timeout=20)
    assert job["rows_done"] == submitted.rows
    assert submitted.job_id in driver.service.blobs.job_ids()
    deadline = time.monotonic() + 30
    while True:
        try:
            driver.service.get("acme", submitted.job_id)
        except JobExpired:
            break
        assert time.monotonic() < deadline, "the job never expired"
        time.sleep(0.25)
    with pytest.raises(JobExpired):
        list(driver.service.iter_result_tables("acme", submitted.job_id))
    assert driver.service.list("acme") == ([], None)
    client = redis.Redis.from_url(worker_settings.redis_url)
    prefix = worker_settings.key_prefix
    leftover = [k for k in client.keys(f"{prefix}:*") if k.decode() not in (reaper_lock(prefix), metrics_key(prefix))]
    assert leftover == []
    # Redis forgot the job by itself; its files are found from the expiry in its id and deleted by the reaper.
    while submitted.job_id in driver.service.blobs.job_ids():
        assert time.monotonic() < deadline + 30, "the reaper never deleted the expired job's files"
        time.sleep(0.25)


def rows_of(expected: pa.Table, got: pa.Table) -> pa.Table:
    """The expected rows whose `row` is among `got`'s."""
    return expected.filter(pc.is_in(expected["row"], got["row"]))
