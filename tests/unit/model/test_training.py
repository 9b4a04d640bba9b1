"""Training on 40,000 rows from `predictq synth` recovers the approved model (the notebook procedure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from model.artifact import load_artifact
from model.scoring import load_scorer
from model.training import lift_table, notebook_dummies, split_indices
from predictq.cli import cli


@pytest.mark.slow
def test_train_on_synthetic_rows_recovers_the_approved_model(tmp_path: Path) -> None:
    runner = CliRunner()
    data, out = tmp_path / "train.csv", tmp_path / "model"
    made = runner.invoke(cli, ["synth", "--rows", "40000", "--seed", "2026", "-o", str(data)])
    assert made.exit_code == 0, made.output
    trained = runner.invoke(cli, ["train", str(data), "-o", str(out)])
    assert trained.exit_code == 0, trained.output
    assert "lift table" in trained.output and "validation" in trained.output

    approved, artifact = load_artifact(), load_artifact(out)
    ref_coef = dict(zip(approved.params.features, approved.params.coefficients, strict=True))
    ref_se = approved.metadata["standard_errors"]
    assert set(artifact.params.features) == set(approved.params.features)
    for name, coef in zip(artifact.params.features, artifact.params.coefficients, strict=True):
        assert abs(coef - ref_coef[name]) <= 4 * ref_se[name], name
    auc = artifact.metadata["metrics"]["auc"]
    assert set(auc) == {"train", "validation", "test", "all"}
    assert all(0.77 <= value <= 0.83 for value in auc.values()), auc

    scorer = load_scorer(str(out))
    result = scorer.score_frame(pd.read_csv(data))
    assert not result.errors
    assert scorer.cutoff == pytest.approx(np.quantile(result.phat, 0.75), abs=1e-12)
    assert result.business_outcome.mean() == pytest.approx(0.25, abs=1e-3)

    # The training profile (data-quality reference) is measured on the training rows themselves.
    frame = pd.read_csv(data)
    profile = scorer.profile
    assert scorer.sha256 == artifact.sha256  # the profile is metadata: the parameters' digest is unchanged
    assert profile.numeric["x44"].missing_rate == frame["x44"].isna().mean()
    assert profile.numeric["x44"].mean == pytest.approx(frame["x44"].mean(), rel=1e-12)
    assert profile.numeric["x44"].sd == pytest.approx(frame["x44"].std(ddof=0), rel=1e-12)
    shares = frame["x5"].value_counts(normalize=True)
    assert profile.categorical["x5"].shares["monday"] == pytest.approx(shares["monday"])
    assert profile.categorical["x31"].missing_rate == frame["x31"].isna().mean()
    assert profile.outcome_share == pytest.approx(result.business_outcome.mean(), abs=1e-12)


def test_notebook_split_sizes() -> None:
    split = split_indices(40_000)
    assert {k: len(v) for k, v in split.items()} == {"train": 32_000, "validation": 4_000, "test": 4_000}
    assert len(np.unique(np.concatenate(list(split.values())))) == 40_000


def test_notebook_dummies_drop_first_and_add_nan() -> None:
    codes = np.array([[0.0], [2.0], [np.nan]])
    values, names = notebook_dummies(codes, {"x31": ("america", "asia", "germany")})
    assert names == ["x31_asia", "x31_germany", "x31_nan"]
    assert values.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_lift_table_has_twenty_equal_bins_highest_first() -> None:
    rng = np.random.default_rng(0)
    phat = rng.random(4000)
    table = lift_table(phat, (rng.random(4000) < phat).astype(int))
    assert len(table) == 20 and (table["rows"] == 200).all() and table["bin"].tolist() == list(range(20, 0, -1))
    assert table["y_rate"].iloc[0] > table["y_rate"].iloc[-1]
