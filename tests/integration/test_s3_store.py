"""The blob store on an S3-protocol server (moto in server mode, started here on loopback as its own process):
a job staged, parsed and scored by real workers through `s3://`, every row once, nothing left behind."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import requests

from core.settings import Settings
from model.synth import write_synth
from predictq.localredis import free_port

pytest.importorskip("moto", reason="moto[server] is a test dependency: pip install -e .[test]")

BUCKET = "predictq-test"
ROWS = 12_000


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto.server` on a free loopback port until the module ends; answers once it serves requests."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "moto.server exited"
            try:
                requests.get(f"http://{endpoint}/", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "moto.server did not answer"
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def worker_settings(worker_settings: Settings, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings with the blob store in a bucket (credentials from the environment, as in production)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1",
                      allow_bucket_creation=True).create_dir(BUCKET)
    prefix = worker_settings.queue_name  # a prefix of the test's own in the shared bucket
    uri = f"s3://{BUCKET}/{prefix}?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    return dataclasses.replace(worker_settings, store_uri=uri, chunk_bytes=2_000_000)


@pytest.fixture(scope="module")
def synth_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s3") / "rows.csv"
    write_synth(path, ROWS, seed=5)
    return path


def test_a_job_through_an_s3_store_scores_every_row_once_and_leaves_nothing(
    synth_csv: Path, celery_workers: Any, job_driver: Any, scorer: Any
) -> None:
    celery_workers.start(concurrency=2)
    submitted = job_driver.submit(synth_csv, "csv", scorer)
    job = job_driver.wait_for_state(submitted.job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
    assert (job["state"], job["rows_total"], job["rows_done"]) == ("succeeded", ROWS, ROWS)
    assert job["chunks_total"] >= 5
    job_driver.assert_every_row_once(submitted)
    blobs = job_driver.service.blobs
    assert blobs.fs.type_name == "s3"
    assert blobs.staged_files(submitted.job_id) == []  # each range went when its chunk committed
    committed = job_driver.service.store.outputs(submitted.job_id)
    assert {p.rsplit("/", 1)[1] for p in blobs.output_files(submitted.job_id)} == {
        f"{i}.{o.token}.res.arrow" for i, o in committed.items()}
    _, deleted = job_driver.service.purge("acme", submitted.job_id)
    assert deleted.files == len(committed) and deleted.bytes > 0
    assert blobs.output_files(submitted.job_id) == []
    assert blobs.free_bytes() is None  # an object store reports no free space: no 507 is answered for it
