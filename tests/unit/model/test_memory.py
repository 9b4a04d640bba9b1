"""Process memory helpers: the returning Arrow pool and glibc's heap trim."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import pyarrow as pa
import pytest

from model.memory import release_free_heap, use_returning_arrow_pool


@pytest.fixture
def restored_pool() -> Iterator[None]:
    """Put back the pool the test process had, whatever the test sets."""
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_arrow_allocations_go_to_the_pool_chosen(restored_pool: None) -> None:
    name = use_returning_arrow_pool()
    assert pa.default_memory_pool().backend_name == name
    assert name == "jemalloc" or "jemalloc" not in pa.supported_memory_backends()
    before = pa.default_memory_pool().bytes_allocated()
    kept = pa.array(range(100_000), pa.int64())
    assert pa.default_memory_pool().bytes_allocated() >= before + kept.nbytes


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_heap_trim_is_available_on_glibc() -> None:
    assert release_free_heap() is True
