"""Process memory helpers: the returning Arrow pool chosen when built in, the heap trimmed where the C library can."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import pyarrow as pa
import pytest

from model import memory
from model.memory import release_free_heap, use_returning_arrow_pool


@pytest.fixture
def restored_pool() -> Iterator[None]:
    """Put back the pool the test process had, whatever the test sets."""
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_jemalloc_becomes_the_default_pool_when_built_in(restored_pool: None) -> None:
    name = use_returning_arrow_pool()
    assert pa.default_memory_pool().backend_name == name
    assert name == "jemalloc" or "jemalloc" not in pa.supported_memory_backends()


def test_a_build_without_jemalloc_keeps_its_default_pool(restored_pool: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> pa.MemoryPool:
        raise NotImplementedError("built without jemalloc")

    monkeypatch.setattr(pa, "jemalloc_memory_pool", missing)
    before = pa.default_memory_pool().backend_name
    assert use_returning_arrow_pool() == before == pa.default_memory_pool().backend_name


def test_the_heap_is_trimmed_where_the_c_library_can(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: calls.append)
    assert release_free_heap() is True and calls == [0]
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # musl, macOS
    assert release_free_heap() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_heap_trim_is_available_on_glibc() -> None:
    assert release_free_heap() is True
