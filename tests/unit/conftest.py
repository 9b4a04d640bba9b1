"""Fixtures every unit test folder shares."""

from __future__ import annotations

import pytest

from model.scoring import Scorer, load_scorer


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    """The approved model, as shipped, loaded once for the session."""
    return load_scorer()
