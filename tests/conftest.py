"""Shared fixtures: a private real Redis server per test session, the reference folder, markers by folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from predictq.localredis import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = Path(os.environ.get("PREDICTQ_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the folder they live in, so `-m unit` and `-m integration` select them."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The folder with the approved model's real rows; tests needing it skip, saying why, when absent."""
    if not (REFERENCE_DIR / "glm26_reference.json").is_file():
        pytest.skip(f"reference rows not found at {REFERENCE_DIR} (set PREDICTQ_REFERENCE_DIR)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a real Redis for this session: PREDICTQ_TEST_REDIS_URL if set, else a private redis-server."""
    external = os.environ.get("PREDICTQ_TEST_REDIS_URL")
    if external:
        # Tests empty their database after each test: never let that be database 0 of a shared server.
        if redis.Redis.from_url(external).connection_pool.connection_kwargs.get("db", 0) == 0:
            pytest.exit("PREDICTQ_TEST_REDIS_URL must name a database other than 0 (it is flushed)", returncode=2)
        yield external
        return
    server = PrivateRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied after each test that uses it."""
    yield redis_server
    redis.Redis.from_url(redis_server).flushdb()
