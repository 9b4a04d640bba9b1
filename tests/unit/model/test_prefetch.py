"""read_ahead: order kept, producer errors raised where they happened, an early stop ends the producer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from model.prefetch import ordered_map, read_ahead


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


def test_ordered_map_keeps_order_on_threads_and_raises_at_the_failing_item() -> None:
    def square(i: int) -> int:
        if i == 30:
            raise ValueError("item 30")
        return i * i

    assert list(ordered_map(square, range(30), threads=3)) == [i * i for i in range(30)]
    seen = []
    with pytest.raises(ValueError, match="item 30"):
        for value in ordered_map(square, range(40), threads=3):
            seen.append(value)
    assert seen == [i * i for i in range(30)]
    assert list(ordered_map(square, range(5), threads=1)) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="at least 1"):
        ordered_map(square, range(5), threads=0)
