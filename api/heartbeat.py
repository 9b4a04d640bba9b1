"""Keep a long upload's job alive while the bytes of its next chunk are still arriving."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

# Well below PREDICTQ_UPLOAD_IDLE_SECONDS, and rare enough to cost nothing (one tiny script per interval).
HEARTBEAT_SECONDS = 15.0


class Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class HeartbeatStream:
    """Passes reads through to `raw`; once `beat` is set, calls it at most every `every` seconds of reading.

    A chunk of a slow upload can take minutes to arrive; without this the reaper, which only sees staged
    chunks, would fail an upload that is still sending.
    """

    def __init__(self, raw: Readable, every: float = HEARTBEAT_SECONDS) -> None:
        self._raw = raw
        self._every = every
        self._last = time.monotonic()
        self.beat: Callable[[], object] | None = None

    def read(self, size: int = -1) -> bytes:
        """Read from the wrapped stream, beating when the interval has passed."""
        data = self._raw.read(size)
        now = time.monotonic()
        if self.beat is not None and now - self._last >= self._every:
            self._last = now
            self.beat()
        return data
