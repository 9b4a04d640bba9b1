"""The one Pipeline: scikit-learn contract, encoding against fixed levels, exact imputer/scaler arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from sklearn.base import clone

from model.artifact import load_artifact
from model.pipeline import build_pipeline
from model.scoring import Scorer

DUMMIES_OF = {"x5": ["x5_monday", "x5_saturday", "x5_sunday", "x5_tuesday"],
              "x31": ["x31_asia", "x31_germany", "x31_japan"]}


def test_feature_names_out_are_the_model_features_in_model_order() -> None:
    params = load_artifact().params
    pipeline = build_pipeline(params)
    assert list(pipeline[:-1].get_feature_names_out()) == list(params.features)
    assert [name for name, _ in pipeline.steps] == ["clean", "impute", "scale", "encode", "select", "glm"]


def test_steps_are_clonable_estimators() -> None:
    pipeline = build_pipeline(load_artifact().params)
    twin = clone(pipeline)
    assert twin.get_params()["glm__cutoff"] == pipeline.named_steps["glm"].cutoff
    assert twin.named_steps["impute"].means == pipeline.named_steps["impute"].means


def test_pipeline_predict_proba_matches_manual_arithmetic(record: dict[str, Any]) -> None:
    params = load_artifact().params
    pipeline = build_pipeline(params)
    frame = {k: [v] for k, v in record.items()}
    raw = {"x12": 6882.34, "x44": 0.2, "x53": 0.7, "x56": -0.3, "x58": 1.1, "x62": 0.05, "x91": 0.4}
    dummies = {"x5_monday": 1.0, "x31_germany": 1.0, "x81_October": 1.0}
    x = []
    for name in params.features:
        if name in raw:
            j = params.numeric_columns.index(name)
            x.append((raw[name] - params.scaler_mean[j]) / np.sqrt(params.scaler_var[j]))
        else:
            x.append(dummies.get(name, 0.0))
    expected = expit(np.dot(x, params.coefficients))
    assert pipeline.predict_proba(frame)[0, 1] == pytest.approx(expected, rel=1e-14)


def test_single_row_equals_same_row_in_batch(scorer: Scorer, record: dict[str, Any]) -> None:
    batch = [dict(record, x5=day, x81=month) for day in ("friday", "sunday", "tuesday")
             for month in ("April", "June")]
    together = scorer.score_records(batch)
    for i, one in enumerate(batch):
        alone = scorer.score_records([one])
        assert alone.phat[0] == together.phat[i]
        np.testing.assert_array_equal(alone.inputs[0], together.inputs[i])


@pytest.mark.parametrize(("column", "level", "hot"), [("x5", "friday", None), ("x5", "sunday", "x5_sunday"),
                                                       ("x31", "america", None), ("x31", None, None),
                                                       ("x31", "japan", "x31_japan"), ("x5", None, None)])
def test_one_row_encodes_against_training_levels(scorer: Scorer, record: dict[str, Any], column: str,
                                                 level: str | None, hot: str | None) -> None:
    out = scorer.score_records([dict(record, **{column: level})]).to_records()[0]
    assert {name: out[name] for name in DUMMIES_OF[column]} == {n: float(n == hot) for n in DUMMIES_OF[column]}


def test_missing_numeric_is_imputed_with_imputer_mean_then_scaled(scorer: Scorer, record: dict[str, Any]) -> None:
    params = scorer.artifact.params
    j = params.numeric_columns.index("x44")
    out = scorer.score_records([dict(record, x44=None)]).to_records()[0]
    assert out["x44"] == (params.imputer_mean[j] - params.scaler_mean[j]) / np.sqrt(params.scaler_var[j])
    assert out["x44"] != 0.0  # the two means differ: each is used where it belongs
