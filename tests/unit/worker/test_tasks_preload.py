"""The model is loaded once in the worker's main process before the pool forks; the lazy load stays the fallback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from model.scoring import Scorer
from worker import tasks


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker process with no processor and no preloaded model (restored after the test)."""
    monkeypatch.setattr(tasks, "_processor", None)
    monkeypatch.setattr(tasks, "_preloaded_scorer", None)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # never contacted: building connects nothing
    monkeypatch.delenv("PREDICTQ_MODEL_PATH", raising=False)
    yield


def count_loads(monkeypatch: pytest.MonkeyPatch, scorer: Any) -> list[str | None]:
    """Replace the model loader with one that records each call and returns `scorer`."""
    calls: list[str | None] = []

    def fake_load(path: str | None = None, expected_sha256: str = "") -> Any:
        calls.append(path)
        return scorer

    monkeypatch.setattr("model.scoring.load_scorer", fake_load)
    return calls


def test_the_preloaded_model_survives_the_fork_and_is_not_loaded_again(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, scorer: Scorer, caplog: pytest.LogCaptureFixture
) -> None:
    calls = count_loads(monkeypatch, scorer)
    with caplog.at_level(logging.INFO, logger="worker.tasks"):
        tasks._preload_model()  # main process, before the pool starts
        tasks._forget_inherited_state()  # what each forked pool process runs first
        first = tasks.processor()
    assert calls == [None]
    assert first.scorer is scorer and tasks.processor() is first
    assert [r.getMessage() for r in caplog.records if "loaded" in r.getMessage()] == [
        f"model {scorer.version} (sha256 {scorer.sha256}) loaded"
    ]


def test_without_a_preload_the_first_chunk_loads_the_model(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, scorer: Scorer
) -> None:
    calls = count_loads(monkeypatch, scorer)
    assert tasks.processor().scorer is scorer
    tasks.processor()
    assert calls == [None]


def test_a_failed_preload_is_logged_and_left_to_the_lazy_path(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, scorer: Scorer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(path: str | None = None) -> Any:
        raise OSError("model file unreadable")

    monkeypatch.setattr("model.scoring.load_scorer", broken)
    with caplog.at_level(logging.ERROR, logger="worker.tasks"):
        tasks._preload_model()
    assert tasks._preloaded_scorer is None
    assert any("model preload failed" in r.getMessage() for r in caplog.records)
    calls = count_loads(monkeypatch, scorer)
    assert tasks.processor().scorer is scorer and calls == [None]
