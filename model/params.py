"""The figures that define a fitted model, as plain data: what an artifact stores and a pipeline is built from."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.errors import ArtifactError
from model.schema import RAW_COLUMNS, dummy_name

_RAW_ORDER = {name: i for i, name in enumerate(RAW_COLUMNS)}


@dataclass(frozen=True)
class ModelParams:
    """Imputer/scaler statistics per numeric column, training levels per categorical, the GLM and its cutoff.

    `features` are in the model's own order (the selection order); coefficients align with them.
    Only the columns the features need are carried: that is what makes the served pipeline small.
    """

    numeric_columns: tuple[str, ...]
    imputer_mean: tuple[float, ...]
    scaler_mean: tuple[float, ...]
    scaler_var: tuple[float, ...]
    categorical_levels: Mapping[str, tuple[str, ...]]
    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    cutoff: float

    def __post_init__(self) -> None:
        n = len(self.numeric_columns)
        if not (len(self.imputer_mean) == len(self.scaler_mean) == len(self.scaler_var) == n):
            raise ArtifactError("numeric statistics do not match the numeric columns")
        if len(self.features) != len(self.coefficients) or len(set(self.features)) != len(self.features):
            raise ArtifactError("features and coefficients do not align")
        known = set(self.numeric_columns) | {
            dummy_name(c, level) for c, levels in self.categorical_levels.items() for level in levels[1:]
        }
        if unknown := [f for f in self.features if f not in known]:
            raise ArtifactError(f"features without a source column: {unknown}")
        numbers = (*self.imputer_mean, *self.scaler_mean, *self.scaler_var, *self.coefficients, self.cutoff)
        if not all(math.isfinite(v) for v in numbers) or min(self.scaler_var, default=1.0) <= 0:
            raise ArtifactError("model figures must be finite, with positive variances")

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The raw columns a record must carry, in raw column order."""
        return tuple(sorted((*self.numeric_columns, *self.categorical_levels), key=_RAW_ORDER.__getitem__))

    @property
    def output_features(self) -> tuple[str, ...]:
        """The model inputs in Python-sorted order, as results present them."""
        return tuple(sorted(self.features))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; the canonical form that an artifact's sha256 covers."""
        return {
            "numeric_columns": list(self.numeric_columns),
            "imputer_mean": list(self.imputer_mean),
            "scaler_mean": list(self.scaler_mean),
            "scaler_var_ddof0": list(self.scaler_var),
            "categorical_levels": {c: list(levels) for c, levels in self.categorical_levels.items()},
            "features": list(self.features),
            "coefficients": list(self.coefficients),
            "cutoff": self.cutoff,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelParams:
        """Inverse of `to_dict`; raises ArtifactError on a missing or mistyped field."""
        try:
            return cls(
                numeric_columns=tuple(str(c) for c in data["numeric_columns"]),
                imputer_mean=tuple(float(v) for v in data["imputer_mean"]),
                scaler_mean=tuple(float(v) for v in data["scaler_mean"]),
                scaler_var=tuple(float(v) for v in data["scaler_var_ddof0"]),
                categorical_levels={str(c): tuple(map(str, lv)) for c, lv in data["categorical_levels"].items()},
                features=tuple(str(f) for f in data["features"]),
                coefficients=tuple(float(v) for v in data["coefficients"]),
                cutoff=float(data["cutoff"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"model parameters are malformed: {exc!r}") from exc
