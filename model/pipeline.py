"""The one scikit-learn Pipeline of the model: clean -> impute -> scale -> encode -> select -> glm.

Steps pass plain float64 numpy arrays laid out as [numeric columns..., categorical level codes...]; the
imputer and scaler act on the leading numeric block, the encoder turns the trailing codes into drop-first
dummies against fixed training levels. Every step follows the scikit-learn contract (parameters in
`__init__`, learned attributes ending in `_` set by `fit`, `get_feature_names_out`); statistics given as
parameters are used as they are, as `OneHotEncoder(categories=...)` does, which is how the approved model's
figures become a fitted pipeline without its training rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.pipeline import Pipeline

from model.cleaning import encode_levels, parse_numeric, value_at
from model.errors import RowError, SchemaError
from model.params import ModelParams
from model.schema import RAW_COLUMNS, dummy_name, numeric_kind

Frame = pd.DataFrame | pa.Table | Mapping[str, Any]


@dataclass(frozen=True)
class CleanBatch:
    """A cleaned batch: values for every input row, which rows are valid, and the errors of the others."""

    values: np.ndarray
    valid: np.ndarray
    errors: list[RowError]


_KIND_NAMES = {"number": "a number", "money": "an amount of money", "percent": "a percent"}
_SHOWN_CHARS = 60  # a row error quotes the bad value, cut to this length


def _shown(value: Any) -> str:
    """A bad value as quoted in a message, shortened so that a huge value cannot bloat the error."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _names(frame: Frame) -> list[str]:
    """Column names of a DataFrame, pyarrow Table or column mapping."""
    return list(frame.column_names) if isinstance(frame, pa.Table) else list(frame.keys())


def _length(frame: Frame, column: str) -> int:
    """Row count of a batch, read from one of its columns."""
    return frame.num_rows if isinstance(frame, pa.Table) else len(frame[column])


class RawCleaner(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Raw records (DataFrame, pyarrow Table or column mapping) -> floats and level codes, with row errors."""

    def __init__(self, numeric_columns: Sequence[str] = (), categorical_levels: Mapping[str, Sequence[str]] = ()):
        self.numeric_columns = numeric_columns
        self.categorical_levels = categorical_levels

    def fit(self, X: Frame, y: Any = None) -> RawCleaner:
        """Nothing to learn: checks the columns and fixes the output layout."""
        self._check_columns(X)
        self.feature_names_out_ = np.array([*self.numeric_columns, *dict(self.categorical_levels)], dtype=object)
        self.n_features_in_ = len(self.feature_names_out_)
        return self

    def _check_columns(self, X: Frame) -> None:
        """Raise SchemaError naming every required column the batch lacks as a whole."""
        present = set(_names(X))
        missing = [c for c in (*self.numeric_columns, *dict(self.categorical_levels)) if c not in present]
        if missing:
            raise SchemaError(f"missing required columns: {', '.join(missing)}", missing=missing)

    def clean(self, X: Frame, rows: np.ndarray | None = None) -> CleanBatch:
        """Clean every required column; a row with any unreadable value is invalid and gets a RowError."""
        self._check_columns(X)
        columns = [*self.numeric_columns, *dict(self.categorical_levels)]
        n = _length(X, columns[0])
        values = np.empty((n, len(columns)))
        bad = np.zeros((n, len(columns)), dtype=bool)
        raw: dict[str, Any] = {}
        for j, name in enumerate(columns):
            raw[name] = X.column(name) if isinstance(X, pa.Table) else X[name]
            if name in self.categorical_levels:
                values[:, j], bad[:, j] = encode_levels(raw[name], self.categorical_levels[name])
            else:
                values[:, j], bad[:, j] = parse_numeric(raw[name], numeric_kind(name))
        errors = self._errors(raw, columns, bad, np.arange(n) if rows is None else rows)
        return CleanBatch(values, ~bad.any(axis=1), errors)

    def _errors(self, raw: dict[str, Any], columns: list[str], bad: np.ndarray, rows: np.ndarray) -> list[RowError]:
        """Word one RowError per bad cell, in row then raw column order (only failed cells are visited)."""
        if not bad.any():
            return []
        errors = []
        cells = np.nonzero(bad)
        by_raw_order = np.lexsort((np.array([RAW_COLUMNS.index(c) for c in columns])[cells[1]], cells[0]))
        for i, j in zip(cells[0][by_raw_order], cells[1][by_raw_order], strict=True):
            name = columns[j]
            errors.append(RowError(int(rows[i]), name, self._problem(name, value_at(raw[name], int(i)))))
        return errors

    def _problem(self, column: str, value: Any) -> str:
        """Why one value cannot be used."""
        shown = _shown(value)
        if column in self.categorical_levels:
            expected = ", ".join(self.categorical_levels[column])
            if isinstance(value, str):
                return f"unknown level {shown}; expected one of {expected}"
            return f"expected one of {expected}, got {type(value).__name__} {shown}"
        if isinstance(value, str):
            return f"cannot read {shown} as {_KIND_NAMES[numeric_kind(column)]}"
        if isinstance(value, float | int) and not isinstance(value, bool):
            return f"not a finite number in float64 range: {shown}"
        return f"expected a number, got {type(value).__name__} {shown}"

    def transform(self, X: Frame) -> np.ndarray:
        """Cleaned values of a batch that must be entirely valid (training); scoring uses `clean`."""
        batch = self.clean(X)
        if batch.errors:
            first = batch.errors[0]
            raise ValueError(f"{len(batch.errors)} unreadable values; first: row {first.row}, {first.column}: "
                             f"{first.message}")
        return batch.values

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Numeric columns then categorical columns (as level codes)."""
        return self.feature_names_out_


class _LeadingBlock(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Shared plumbing of steps that act on the leading numeric block and pass the other columns through."""

    columns: Sequence[str]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Unchanged: these steps keep the layout."""
        return np.asarray(input_features if input_features is not None else self.columns, dtype=object)


class MeanImputer(_LeadingBlock):
    """Replace NaN in the leading numeric columns by their means (SimpleImputer(strategy='mean') arithmetic)."""

    def __init__(self, columns: Sequence[str] = (), means: Sequence[float] | None = None):
        self.columns = columns
        self.means = means

    def fit(self, X: np.ndarray, y: Any = None) -> MeanImputer:
        """Take the given means, or learn them from the non-missing values."""
        k = len(self.columns)
        self.statistics_ = np.asarray(self.means if self.means is not None else np.nanmean(X[:, :k], axis=0), float)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """A copy with the numeric block's NaN filled."""
        k = len(self.statistics_)
        out = X.copy()
        out[:, :k] = np.where(np.isnan(X[:, :k]), self.statistics_, X[:, :k])
        return out


class Standardizer(_LeadingBlock):
    """Center and scale the leading numeric columns: (x - mean) / sqrt(var_ddof0), as StandardScaler does."""

    def __init__(self, columns: Sequence[str] = (), mean: Sequence[float] | None = None,
                 var: Sequence[float] | None = None):
        self.columns = columns
        self.mean = mean
        self.var = var

    def fit(self, X: np.ndarray, y: Any = None) -> Standardizer:
        """Take the given mean and variance, or learn them (population variance)."""
        k = len(self.columns)
        self.mean_ = np.asarray(self.mean if self.mean is not None else X[:, :k].mean(axis=0), float)
        self.var_ = np.asarray(self.var if self.var is not None else X[:, :k].var(axis=0), float)
        self.scale_ = np.sqrt(self.var_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """A copy with the numeric block standardized."""
        k = len(self.mean_)
        out = X.copy()
        out[:, :k] = (X[:, :k] - self.mean_) / self.scale_
        return out


class DropFirstOneHot(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Trailing level codes -> dummies for every training level but the first (get_dummies drop_first).

    A missing code gives all zeros, which is what the notebook's `_nan` dummy amounts to when the model
    does not use it; the levels are fixed, never read from the batch.
    """

    def __init__(self, categories: Mapping[str, Sequence[str]] = ()):
        self.categories = categories

    def fit(self, X: np.ndarray, y: Any = None) -> DropFirstOneHot:
        """Record how many leading columns pass through."""
        self.n_features_in_ = X.shape[1]
        self.n_passthrough_ = X.shape[1] - len(self.categories)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Leading columns unchanged, then one block of 0/1 columns per categorical."""
        p = self.n_passthrough_
        widths = [len(levels) - 1 for levels in self.categories.values()]
        out = np.empty((X.shape[0], p + sum(widths)))
        out[:, :p] = X[:, :p]
        for j, width in enumerate(widths):
            start = p + sum(widths[:j])
            np.equal(X[:, p + j, None], np.arange(1, width + 1), out=out[:, start : start + width])
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Passthrough names, then `column_level` for each kept level."""
        names = list(input_features)[: self.n_passthrough_]
        dummies = [dummy_name(c, level) for c, levels in self.categories.items() for level in levels[1:]]
        return np.array(names + dummies, dtype=object)


class FeatureSelector(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Keep the model's features, in the model's order, out of the named input columns."""

    def __init__(self, features: Sequence[str] = (), input_features: Sequence[str] = ()):
        self.features = features
        self.input_features = input_features

    def fit(self, X: np.ndarray, y: Any = None) -> FeatureSelector:
        """Resolve feature names to column positions."""
        position = {name: i for i, name in enumerate(self.input_features)}
        self.indices_ = np.array([position[f] for f in self.features], dtype=np.intp)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The selected columns."""
        return X[:, self.indices_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The model's feature names."""
        return np.asarray(self.features, dtype=object)


class NoInterceptLogit(ClassifierMixin, BaseEstimator):
    """Logistic regression without intercept: phat = expit(X @ coef); class 1 when phat >= cutoff.

    Given `coef`, fit only records it; without, fit is the unpenalized maximum-likelihood fit (statsmodels
    Logit, the notebook's estimator, from the `train` extra), which also yields standard errors.
    """

    def __init__(self, coef: Sequence[float] | None = None, cutoff: float = 0.5):
        self.coef = coef
        self.cutoff = cutoff

    def fit(self, X: np.ndarray, y: Any = None) -> NoInterceptLogit:
        """Take the given coefficients, or estimate them by maximum likelihood."""
        self.classes_ = np.array([0, 1])
        if self.coef is not None:
            self.coef_ = np.asarray(self.coef, dtype=np.float64)
            self.bse_ = None
            return self
        import statsmodels.api as sm  # training-only dependency

        result = sm.Logit(np.asarray(y, dtype=np.float64), X).fit(disp=0, method="newton", maxiter=100)
        self.coef_ = np.asarray(result.params, dtype=np.float64)
        self.bse_ = np.asarray(result.bse, dtype=np.float64)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The linear predictor X @ coef, summed feature by feature in a fixed order.

        BLAS (and numpy's own reductions) pick different summation orders for one row and for many, which
        changes the last bit; adding one feature column at a time makes a row's score independent of the
        batch it arrives in.
        """
        columns = np.ascontiguousarray(X.T)
        z = columns[0] * self.coef_[0]
        for column, weight in zip(columns[1:], self.coef_[1:], strict=True):
            z += column * weight
        return z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Columns P(y=0), P(y=1)."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where phat >= cutoff, else 0."""
        return (expit(self.decision_function(X)) >= self.cutoff).astype(np.int64)


def build_pipeline(params: ModelParams) -> Pipeline:
    """The fitted Pipeline for a set of model figures (nothing is learned: every statistic is given)."""
    levels = dict(params.categorical_levels)
    encoded = [*params.numeric_columns, *(dummy_name(c, lv) for c, lvs in levels.items() for lv in lvs[1:])]
    pipeline = Pipeline([
        ("clean", RawCleaner(list(params.numeric_columns), levels)),
        ("impute", MeanImputer(list(params.numeric_columns), list(params.imputer_mean))),
        ("scale", Standardizer(list(params.numeric_columns), list(params.scaler_mean), list(params.scaler_var))),
        ("encode", DropFirstOneHot(levels)),
        ("select", FeatureSelector(list(params.features), encoded)),
        ("glm", NoInterceptLogit(list(params.coefficients), params.cutoff)),
    ])
    empty = {c: pa.array([], pa.float64()) for c in params.numeric_columns}
    empty |= {c: pa.array([], pa.string()) for c in levels}
    return pipeline.fit(empty, np.empty(0))
