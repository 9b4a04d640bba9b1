"""Fidelity to the approved model on the 1000 real rows in ../shared/reference (skipped, saying why, if absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from model.cleaning import parse_numeric
from model.scoring import Scorer
from model.synth import format_money
from predictq.cli import cli

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def real_rows(reference_dir: Path) -> list[dict[str, Any]]:
    return json.loads((reference_dir / "exercise_26_test_rows_0_999.json").read_text())


@pytest.fixture(scope="module")
def reference_phat(reference_dir: Path) -> np.ndarray:
    return pd.read_csv(reference_dir / "reference_phat_0_999.csv")["phat"].to_numpy()


def test_batch_matches_reference(scorer: Scorer, real_rows: list[dict], reference_phat: np.ndarray) -> None:
    result = scorer.score_records(real_rows)
    assert not result.errors and result.rows.tolist() == list(range(1000))
    assert np.max(np.abs(result.phat - reference_phat)) <= 1e-12
    assert [int((result.phat[:n] >= 0.75).sum()) for n in (10, 100, 1000)] == [2, 24, 215]
    assert int(result.business_outcome.sum()) == 253


def test_one_at_a_time_equals_batch(scorer: Scorer, real_rows: list[dict]) -> None:
    batch = scorer.score_records(real_rows).to_records()
    assert [scorer.score_records([row]).to_records()[0] for row in real_rows] == batch


def test_csv_equals_batch(scorer: Scorer, real_rows: list[dict], tmp_path: Path) -> None:
    pd.DataFrame(real_rows).to_csv(tmp_path / "rows.csv", index=False)
    outcome = CliRunner().invoke(cli, ["score", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv")])
    assert outcome.exit_code == 0, outcome.output
    scored = pd.read_csv(tmp_path / "out.csv")
    expected = scorer.score_records(real_rows).outputs
    assert scored["row"].tolist() == list(range(1000))
    np.testing.assert_array_equal(scored[expected.columns].to_numpy(dtype=float), expected.to_numpy(dtype=float))


@pytest.mark.parametrize("style", ["accounting", "plain", "number", "number-string"])
def test_money_formats_give_same_results(scorer: Scorer, real_rows: list[dict], style: str) -> None:
    amounts, bad = parse_numeric([row["x12"] for row in real_rows], "money")
    assert not bad.any()
    rewritten: Any
    if style in ("accounting", "plain"):
        rewritten = format_money(amounts, pa.array(np.full(len(amounts), style == "accounting"))).to_pylist()
        assert any(s.startswith("($") for s in rewritten) == (style == "accounting")
    else:
        rewritten = amounts.tolist() if style == "number" else [str(a) for a in amounts.tolist()]
    original = scorer.score_records(real_rows)
    again = scorer.score_records([dict(row, x12=x12) for row, x12 in zip(real_rows, rewritten, strict=True)])
    np.testing.assert_array_equal(again.phat, original.phat)
    np.testing.assert_array_equal(again.business_outcome, original.business_outcome)


def test_approved_training_profile_is_derived_from_the_model_and_the_real_rows(
    scorer: Scorer, real_rows: list[dict]
) -> None:
    from model.profile import PROFILE_KEY, reference_profile

    params = scorer.artifact.params
    batch = scorer.pipeline.named_steps["clean"].clean(pd.DataFrame(real_rows))
    k = len(params.numeric_columns)
    derived = reference_profile(batch.values[:, :k], batch.values[:, k:], params)
    assert scorer.artifact.metadata[PROFILE_KEY] == derived
    assert scorer.profile.categorical["x5"].shares["thursday"] == 0.16  # 160 of the 1000 rows
    assert scorer.profile.numeric["x44"].missing_rate == 0.03
