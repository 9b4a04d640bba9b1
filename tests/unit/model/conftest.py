"""Fixtures of the model tests: the approved scorer and a clean record of the model's input schema."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def record() -> dict[str, Any]:
    """A valid raw record: the required columns plus one column the model ignores."""
    return {
        "x5": "monday", "x12": "$6,882.34", "x31": "germany", "x44": 0.2, "x53": 0.7, "x56": -0.3, "x58": 1.1,
        "x62": 0.05, "x81": "October", "x91": 0.4, "x0": "ignored",
    }
