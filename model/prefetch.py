"""Read ahead: an iterator's next items produced on a background thread while the consumer works.

Parsing (pyarrow's CSV reader) and encoding (pyarrow's CSV writer, zstd) release the GIL, so on two cores a
reader thread and a scoring/writing thread overlap instead of taking turns.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_POLL_SECONDS = 0.1  # how often a blocked producer checks that the consumer is still there


class _Failed:
    """The producer's exception, carried through the queue to be raised in the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of `items`, in order, with up to `depth` produced ahead on a daemon thread (started on the
    first `next`).

    An exception of the producer is raised here, at the item where it happened. Closing the returned
    iterator early (break, an exception in the consumer) stops the producer at its next item.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    return _consume(items, depth)


def _consume(items: Iterable[T], depth: int) -> Iterator[T]:
    """The consumer's side of `read_ahead`."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put one item, giving up once the consumer has gone."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, which decides
            offer(_Failed(exc))
            return
        offer(_DONE)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def ordered_map(work: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """`work(item)` for each item, in order, computed on up to `threads` threads at once (in the calling thread
    when `threads` is 1). At most `threads` items are taken ahead of the one yielded; an exception of `work`
    is raised at its item. For work that releases the GIL (pyarrow's encoders), more cores share one stream.
    """
    if threads < 1:
        raise ValueError("threads must be at least 1")
    if threads == 1:
        return map(work, items)
    return _ordered_map(work, items, threads)


def _ordered_map(work: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="ordered-map") as pool:
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early or an item failed: drop what is not started
                future.cancel()
