"""Fixtures for the job store's unit tests: fakeredis (with Lua), the approved scorer, small real uploads."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from core.settings import Settings
from jobs.job_store import JobStore
from jobs.processing import ChunkProcessor
from jobs.service import JobService
from model.readers import Chunk, iter_chunks
from model.scoring import Scorer
from model.synth import write_synth
from tests.support.clock import FakeClock

SYNTH_ROWS = 600
CHUNK_ROWS = 200


@pytest.fixture(scope="session")
def synth_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV of synthetic rows with every x0..x99 column."""
    path = tmp_path_factory.mktemp("synth") / "rows.csv"
    write_synth(path, SYNTH_ROWS, seed=7)
    return path


@pytest.fixture
def chunks(synth_csv: Path, scorer: Scorer) -> list[Chunk]:
    """The synthetic upload read into chunks by the real reader, as the API does."""
    with synth_csv.open("rb") as stream:
        return list(iter_chunks(stream, "csv", columns=scorer.required_columns, chunk_rows=CHUNK_ROWS))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with short intervals, a small attempt bound, and a blob store of the test's own."""
    return dataclasses.replace(Settings(), max_chunk_attempts=2, job_ttl_seconds=3600, upload_idle_seconds=30,
                               stuck_job_seconds=600, task_soft_time_limit=5, task_time_limit=10,
                               store_uri=str(tmp_path / "store"), store_reserve_bytes=0)


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    """A fresh fake Redis server per test."""
    server = fakeredis.FakeServer()
    yield fakeredis.FakeRedis(server=server)


@pytest.fixture
def queued() -> list[tuple[str, int]]:
    """Every (job_id, chunk index) enqueued, in order."""
    return []


@pytest.fixture
def clock() -> FakeClock:
    """The job store's clock: tests advance it instead of sleeping."""
    return FakeClock()


@pytest.fixture
def service(client: fakeredis.FakeRedis, settings: Settings, queued: list[tuple[str, int]],
            clock: FakeClock) -> JobService:
    """JobService whose queue is the `queued` list and whose clock is `clock`."""
    return JobService(client, settings, enqueue=lambda job_id, index: queued.append((job_id, index)), clock=clock)


@pytest.fixture
def store(service: JobService) -> JobStore:
    return service.store


@pytest.fixture
def processor(service: JobService, scorer: Scorer, settings: Settings) -> ChunkProcessor:
    """The worker-side logic, run in-process against the same fake Redis."""
    return ChunkProcessor(service.store, service.blobs, scorer, settings.max_chunk_attempts, service.enqueue)
