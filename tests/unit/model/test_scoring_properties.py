"""Property tests: any JSON-like garbage yields scores or row errors, never an exception, and batch = one by one."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.schema import REQUIRED_COLUMNS
from model.scoring import Scorer

GOOD = {"x5": "monday", "x12": "$6,882.34", "x31": "asia", "x44": 0.2, "x53": 0.7, "x56": -0.3, "x58": 1.1,
        "x62": 0.05, "x81": "May", "x91": 0.4}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.text(max_size=12),
    st.sampled_from(["$1,234.56", "($5.00)", " 62.59% ", "Monday ", " japan", "October", "", "nan", "1e3"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2))
records = st.lists(
    st.one_of(
        st.fixed_dictionaries({}, optional={c: values for c in REQUIRED_COLUMNS}).map(lambda r: {**GOOD, **r}),
        st.fixed_dictionaries({}, optional={c: values for c in REQUIRED_COLUMNS}),
        values,
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_every_row_is_scored_or_explained_and_batch_equals_single(scorer: Scorer, batch: list[Any]) -> None:
    result = scorer.score_records(batch)
    scored, failed = set(result.rows.tolist()), {e.row for e in result.errors}
    assert scored | failed == set(range(len(batch))) and not scored & failed
    assert all(e.column is None or e.column in REQUIRED_COLUMNS for e in result.errors)
    assert np.all((result.phat >= 0) & (result.phat <= 1))  # NaN fails this too
    for position, row in enumerate(result.rows.tolist()):
        alone = scorer.score_records([batch[row]])
        assert not alone.errors and alone.phat[0] == result.phat[position]
        np.testing.assert_array_equal(alone.inputs[0], result.inputs[position])
