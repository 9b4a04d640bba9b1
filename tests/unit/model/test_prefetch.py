"""read_ahead: order kept, producer errors raised where they happened, an early stop ends the producer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from model.prefetch import read_ahead


def test_items_come_in_order_from_another_thread() -> None:
    producers: list[str] = []

    def items() -> Iterator[int]:
        for i in range(50):
            producers.append(threading.current_thread().name)
            yield i

    assert list(read_ahead(items(), depth=3)) == list(range(50))
    assert set(producers) == {"read-ahead"}


def test_producer_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("bad chunk")

    seen = []
    with pytest.raises(KeyError, match="bad chunk"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_closing_early_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(1_000_000):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), depth=2)
    assert next(ahead) == 0
    producers = [t for t in threading.enumerate() if t.name == "read-ahead"]
    ahead.close()
    for thread in producers:
        thread.join(timeout=5)
    assert producers and not any(t.is_alive() for t in producers)
    assert len(produced) <= 5


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        read_ahead([1], depth=0)
