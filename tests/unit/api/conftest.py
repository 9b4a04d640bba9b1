"""Fixtures for the API unit tests: the app built through its factory on fakeredis, with the real scorer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from core.settings import Settings
from jobs.blob_store import BlobStore
from jobs.job_store import JobStore
from jobs.processing import ChunkProcessor
from jobs.service import JobService
from model.scoring import Scorer

GOOD_ROW: dict[str, Any] = {
    "x5": "monday", "x12": "$1,234.50", "x31": "asia", "x44": 0.5, "x53": 1.25,
    "x56": -0.3, "x58": 2.0, "x62": 0.1, "x81": "July", "x91": 3.0, "x0": 7,
}


@pytest.fixture
def good_row() -> dict[str, Any]:
    """A synthetic row the approved model scores (not a real row)."""
    return dict(GOOD_ROW)


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    """A private in-memory Redis (Lua scripts run through lupa)."""
    return fakeredis.FakeRedis()


AppFactory = Callable[..., Flask]


@pytest.fixture
def enqueued() -> list[tuple[str, int]]:
    """(job id, chunk index) pairs the API queued for scoring, in order."""
    return []


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    """The test's own blob store (no reserve: the machine's free space does not matter)."""
    return BlobStore.from_uri(str(tmp_path / "store"))


@pytest.fixture
def make_app(scorer: Scorer, fake_redis: fakeredis.FakeRedis, enqueued: list[tuple[str, int]],
             blobs: BlobStore) -> AppFactory:
    """Build an app with settings overrides (auth disabled unless asked) on fakeredis and in-memory limits;
    the job service records enqueued chunks instead of sending them to a broker."""

    def build(test_config: dict[str, Any] | None = None, **overrides: Any) -> Flask:
        settings = replace(Settings(), **{"auth_mode": "disabled", "store_uri": blobs.root, "store_reserve_bytes": 0,
                                          **overrides}).validated()
        jobs = JobService(fake_redis, settings, enqueue=lambda job_id, index: enqueued.append((job_id, index)),
                          blobs=BlobStore.from_uri(settings.store_uri, settings.store_reserve_bytes))
        services: dict[str, Any] = {"scorer": scorer, "redis": fake_redis, "jobs": jobs}
        config = {"TESTING": True, "SERVICES": services, "RATELIMIT_STORAGE_URI": "memory://", **(test_config or {})}
        return create_app(settings, config)

    return build


@pytest.fixture
def score_queued(scorer: Scorer, fake_redis: fakeredis.FakeRedis, enqueued: list[tuple[str, int]],
                 blobs: BlobStore) -> Callable[[], int]:
    """Run the worker's chunk processing in-process for every queued chunk; returns how many ran."""

    def run() -> int:
        processor = ChunkProcessor(JobStore(fake_redis, Settings().key_prefix), blobs, scorer, 3, lambda j, i: None)
        done = 0
        while enqueued:
            processor.process(*enqueued.pop(0))
            done += 1
        return done

    return run


@pytest.fixture
def client(make_app: AppFactory) -> FlaskClient:
    """A test client of the default app (auth disabled: tenant "default")."""
    return make_app().test_client()


@pytest.fixture
def make_rows(good_row: dict[str, Any]) -> Callable[[int], list[dict[str, Any]]]:
    """`n` synthetic rows that differ in x44 and carry a client id column `cid`."""

    def build(n: int) -> list[dict[str, Any]]:
        return [{**good_row, "x44": i / 7, "cid": f"c{i}"} for i in range(n)]

    return build
