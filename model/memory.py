"""Process memory: a pyarrow allocator that hands freed memory back, and glibc's free heap returned on demand.

Long-lived processes (API workers, Celery pool processes) parse many short-lived buffers. pyarrow's default
mimalloc pool keeps freed pages per thread, and glibc keeps the heap that a large JSON body's Python objects
occupied; both show up as resident memory that only grows. These two calls keep the steady state near the
process's import-time size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import pyarrow as pa


def use_returning_arrow_pool() -> str:
    """Make jemalloc (which returns freed pages after a short decay) pyarrow's default pool, when built in.

    Returns the backend now in use.
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow build without jemalloc keeps its default
        return pa.default_memory_pool().backend_name
    pa.set_memory_pool(pool)
    return pool.backend_name


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc only); whether anything could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
