"""Training figures of a model's inputs: the reference a job's data-quality summary is compared with.

An artifact carries them in its metadata under `training_profile` (outside the parameters, so the model's
sha256 does not change): per numeric input the mean and standard deviation of the observed values and the
missing rate, per categorical input the share of each level among the rows that have one and the missing rate,
the share of rows the cutoff puts at business_outcome 1, and where each figure comes from. An artifact
without a profile still gets the figures its parameters imply (imputer mean, scaler standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.artifact import Artifact
from model.params import ModelParams

PROFILE_KEY = "training_profile"
# The cutoff is the 75th percentile of the training predictions: a quarter of training rows are at or above it.
CUTOFF_SHARE = 0.25


@dataclass(frozen=True)
class NumericProfile:
    """One numeric input in training: mean and sd of observed values, share of rows missing (None: unknown)."""

    mean: float
    sd: float
    missing_rate: float | None


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical input in training: share of each level among rows with a level, share missing."""

    shares: Mapping[str, float] | None
    missing_rate: float | None


@dataclass(frozen=True)
class TrainingProfile:
    """What training looked like, input by input, with the provenance of the figures."""

    numeric: Mapping[str, NumericProfile]
    categorical: Mapping[str, CategoricalProfile]
    outcome_share: float
    provenance: Mapping[str, str]


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def implied_profile(params: ModelParams) -> TrainingProfile:
    """The figures the parameters alone give: imputer means and scaler standard deviations, no rates."""
    numeric = {
        c: NumericProfile(mean, math.sqrt(var), None)
        for c, mean, var in zip(params.numeric_columns, params.imputer_mean, params.scaler_var, strict=True)
    }
    return TrainingProfile(
        numeric=numeric,
        categorical={c: CategoricalProfile(None, None) for c in params.categorical_levels},
        outcome_share=CUTOFF_SHARE,
        provenance={"numeric": "the model's imputer means and scaler standard deviations (after mean imputation)"},
    )


def profile_of(artifact: Artifact) -> TrainingProfile:
    """The artifact's training profile, or the one its parameters imply when it carries none."""
    stored = artifact.metadata.get(PROFILE_KEY)
    if not isinstance(stored, Mapping):
        return implied_profile(artifact.params)
    numeric = {
        c: NumericProfile(float(f["mean"]), float(f["sd"]), _optional(f.get("missing_rate")))
        for c, f in stored.get("numeric", {}).items()
    }
    categorical = {
        c: CategoricalProfile({lv: float(s) for lv, s in f["shares"].items()} if f.get("shares") else None,
                              _optional(f.get("missing_rate")))
        for c, f in stored.get("categorical", {}).items()
    }
    implied = implied_profile(artifact.params)
    return TrainingProfile(
        numeric={**implied.numeric, **numeric},
        categorical={**implied.categorical, **categorical},
        outcome_share=float(stored.get("outcome_share", CUTOFF_SHARE)),
        provenance={str(k): str(v) for k, v in stored.get("provenance", {}).items()},
    )


def measure_profile(numeric: np.ndarray, codes: np.ndarray, params: ModelParams) -> dict[str, Any]:
    """Missing rates, level shares and observed mean/sd (ddof 0) of cleaned rows, as artifact metadata.

    `numeric` holds the model's numeric inputs (NaN missing) in `params.numeric_columns` order, `codes` the
    level codes (NaN missing) of `params.categorical_levels` in its order.
    """
    out: dict[str, Any] = {"numeric": {}, "categorical": {}}
    for j, column in enumerate(params.numeric_columns):
        values = numeric[:, j]
        observed = values[~np.isnan(values)]
        out["numeric"][column] = {"mean": float(observed.mean()), "sd": float(observed.std()),
                                  "missing_rate": float(np.isnan(values).mean())}
    for j, (column, levels) in enumerate(params.categorical_levels.items()):
        code = codes[:, j]
        present = code[~np.isnan(code)].astype(np.intp)
        counts = np.bincount(present, minlength=len(levels))
        out["categorical"][column] = {
            "shares": {level: float(n / max(len(present), 1)) for level, n in zip(levels, counts, strict=True)},
            "missing_rate": float(np.isnan(code).mean()),
        }
    return out


REFERENCE_PROVENANCE = {
    "mean": "the imputer mean: mean of the observed values over the 32,000-row training split (a model parameter)",
    "sd": "sqrt(scaler variance / (1 - missing rate)): the scaler's variance is taken after mean imputation over "
          "the training split, so it is divided by the share of observed values to give their variance",
    "missing_rate": "rows 0-999 of the real scoring file exercise_26_test.csv (the training file's own rates are "
                    "not published; these real rows are the best estimate the approved model's figures allow)",
    "shares": "level shares among rows with a level, over the same 1000 real rows",
    "outcome_share": "0.25 by construction: the cutoff is the 75th percentile of the training predictions",
}


def reference_profile(numeric: np.ndarray, codes: np.ndarray, params: ModelParams) -> dict[str, Any]:
    """The approved model's profile: its own training means and variances, rates and shares of real rows.

    `numeric` and `codes` are the cleaned real rows (as for `measure_profile`).
    """
    measured = measure_profile(numeric, codes, params)
    for column, mean, var in zip(params.numeric_columns, params.imputer_mean, params.scaler_var, strict=True):
        figures = measured["numeric"][column]
        figures["mean"] = mean
        figures["sd"] = math.sqrt(var / (1.0 - figures["missing_rate"]))
    return {**measured, "outcome_share": CUTOFF_SHARE, "provenance": REFERENCE_PROVENANCE}
