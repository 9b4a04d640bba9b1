"""A clock that tests move by hand (`core.clock.Clock`), so code that expires things is tested without sleeping."""

from __future__ import annotations

import time


class FakeClock:
    """Epoch seconds that stand still until `advance`. It starts at the real time (so the expiry times Redis
    is given from it lie in Redis's own future), in whole seconds (so ages compare exactly at a boundary)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward."""
        self.now += seconds
