"""A slow upload refreshes its job's heartbeat while bytes keep arriving."""

from __future__ import annotations

import io

from api.heartbeat import HeartbeatStream


def test_passes_bytes_through_and_beats_only_once_set_and_at_most_once_per_interval() -> None:
    beats: list[int] = []
    stream = HeartbeatStream(io.BytesIO(b"abcdef"), every=0.0)
    assert stream.read(2) == b"ab" and beats == []  # no job yet: nothing to keep alive
    stream.beat = lambda: beats.append(1)
    assert stream.read(2) == b"cd" and stream.read(-1) == b"ef"
    assert beats == [1, 1]
    slow = HeartbeatStream(io.BytesIO(b"abcdef"), every=3600.0)
    slow.beat = lambda: beats.append(2)
    assert slow.read(6) == b"abcdef" and 2 not in beats
