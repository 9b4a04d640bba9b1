"""Time as a parameter: code that expires or times out reads a `Clock`, so its tests advance time instead of
sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Epoch seconds now (`time.time` unless a test passes its own)."""

system_clock: Clock = time.time
