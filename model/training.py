"""The notebook's training procedure, step for step, ending in a pruned model of the one Pipeline class.

1. clean x12/x63; 2. split 10 % validation then 4,000 test rows (random_state=13), 32,000 training rows;
3. mean imputer + standard scaler on the 96 numeric columns, fit on the 32,000 rows; 4. get_dummies
(drop_first, dummy_na) on x5/x31/x81/x82: 121 features; 5. L1 liblinear logistic regression (C=1, no
intercept) on the training rows, keep the 25 largest squared coefficients; 6. unpenalized no-intercept
Logit (statsmodels) on all rows; 7. cutoff = 75th percentile of the predictions on all rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from model.artifact import Artifact, save_artifact
from model.params import ModelParams
from model.pipeline import NoInterceptLogit, RawCleaner, build_pipeline
from model.profile import PROFILE_KEY, measure_profile
from model.schema import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, TARGET_COLUMN, dummy_name

RANDOM_STATE = 13
VALIDATION_FRACTION = 0.1
TEST_ROWS = 4000
N_FEATURES = 25
CUTOFF_QUANTILE = 0.75
LIFT_BINS = 20
# A pruned model must give the very predictions the full 121-feature fit gave.
_PRUNE_TOLERANCE = 1e-12
TRAINED_PROVENANCE = {
    "rows": "every row of the training file (the rows the final GLM was fit on)",
    "numeric": "mean and standard deviation (ddof 0) of the observed values, and the share of rows missing",
    "categorical": "share of each level among rows with a level, and the share of rows missing",
    "outcome_share": "share of training rows with phat at or above the cutoff",
}


@dataclass(frozen=True)
class TrainingResult:
    """The fitted, pruned parameters with what the notebook reports about them."""

    params: ModelParams
    auc: dict[str, float]
    lift: pd.DataFrame
    standard_errors: dict[str, float]
    l1_coefficients: dict[str, float]
    n_rows: int
    profile: dict[str, Any]

    def metadata(self) -> dict[str, Any]:
        """Metrics and standard errors as artifact metadata."""
        return {
            "metrics": {"auc": self.auc, "lift": self.lift.to_dict(orient="records"), "n_rows": self.n_rows},
            "standard_errors": self.standard_errors,
            "l1_selection_coefficients": self.l1_coefficients,
            PROFILE_KEY: self.profile,
        }


def training_levels(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Each categorical column's levels as get_dummies sees them: the sorted distinct non-missing values."""
    return {c: tuple(sorted(str(v) for v in frame[c].dropna().unique())) for c in CATEGORICAL_COLUMNS}


def split_indices(n: int) -> dict[str, np.ndarray]:
    """Row positions of the notebook's train / validation / test splits."""
    rest, validation = train_test_split(np.arange(n), test_size=VALIDATION_FRACTION, random_state=RANDOM_STATE)
    train, test = train_test_split(rest, test_size=TEST_ROWS, random_state=RANDOM_STATE)
    return {"train": train, "validation": validation, "test": test}


def notebook_dummies(codes: np.ndarray, levels: Mapping[str, tuple[str, ...]]) -> tuple[np.ndarray, list[str]]:
    """get_dummies(drop_first=True, dummy_na=True) of level codes (NaN = missing): values and names."""
    blocks, names = [], []
    for j, (column, lv) in enumerate(levels.items()):
        code = codes[:, j]
        blocks.append(code[:, None] == np.arange(1, len(lv))[None, :])
        blocks.append(np.isnan(code)[:, None])
        names += [dummy_name(column, level) for level in lv[1:]] + [dummy_name(column, "nan")]
    return np.hstack(blocks).astype(np.float64), names


def lift_table(phat: np.ndarray, y: np.ndarray, bins: int = LIFT_BINS) -> pd.DataFrame:
    """The notebook's lift table: pd.qcut into equal-count bins of phat, highest bin first."""
    frame = pd.DataFrame({"phat": phat, "y": y, "bin": pd.qcut(phat, bins, labels=False) + 1})
    table = frame.groupby("bin").agg(rows=("y", "size"), phat_min=("phat", "min"), phat_max=("phat", "max"),
                                     phat_mean=("phat", "mean"), y_rate=("y", "mean"))
    table["lift"] = table["y_rate"] / y.mean()
    return table.sort_index(ascending=False).reset_index()


def fit_notebook_model(frame: pd.DataFrame) -> TrainingResult:
    """Run the notebook's procedure on a raw training frame (x0..x99 and y) and prune to the selected features."""
    levels = training_levels(frame)
    cleaned = RawCleaner(list(NUMERIC_COLUMNS), levels).fit(frame).transform(frame)
    numeric, codes = cleaned[:, : len(NUMERIC_COLUMNS)], cleaned[:, len(NUMERIC_COLUMNS) :]
    y = frame[TARGET_COLUMN].to_numpy(dtype=np.int64)
    split = split_indices(len(frame))

    imputer = SimpleImputer(strategy="mean").fit(numeric[split["train"]])
    scaler = StandardScaler().fit(imputer.transform(numeric[split["train"]]))
    dummies, dummy_names = notebook_dummies(codes, levels)
    features = np.hstack([scaler.transform(imputer.transform(numeric)), dummies])
    names = [*NUMERIC_COLUMNS, *dummy_names]

    l1 = LogisticRegression(l1_ratio=1.0, C=1.0, fit_intercept=False, solver="liblinear")
    l1.fit(features[split["train"]], y[split["train"]])
    order = np.argsort(-(l1.coef_[0] ** 2), kind="stable")[:N_FEATURES]
    selected = [names[i] for i in order]

    glm = NoInterceptLogit().fit(features[:, order], y)
    phat = expit(features[:, order] @ glm.coef_)
    params = _pruned(selected, glm.coef_, float(np.quantile(phat, CUTOFF_QUANTILE)), imputer, scaler, levels)
    _check_pruned(params, frame, phat)
    auc = {part: float(roc_auc_score(y[rows], phat[rows])) for part, rows in split.items()}
    auc["all"] = float(roc_auc_score(y, phat))
    used_numeric = [NUMERIC_COLUMNS.index(c) for c in params.numeric_columns]
    used_codes = [list(levels).index(c) for c in params.categorical_levels]
    profile = measure_profile(numeric[:, used_numeric], codes[:, used_codes], params)
    profile |= {"outcome_share": float(np.mean(phat >= params.cutoff)), "provenance": TRAINED_PROVENANCE}
    return TrainingResult(
        params=params,
        auc=auc,
        lift=lift_table(phat, y),
        standard_errors=dict(zip(selected, map(float, glm.bse_), strict=True)),
        l1_coefficients={names[i]: float(l1.coef_[0][i]) for i in order},
        n_rows=len(frame),
        profile=profile,
    )


def _pruned(selected: list[str], coef: np.ndarray, cutoff: float, imputer: SimpleImputer, scaler: StandardScaler,
            levels: Mapping[str, tuple[str, ...]]) -> ModelParams:
    """Keep only the statistics and levels the selected features need."""
    if unusable := [f for f in selected if f.endswith("_nan")]:
        raise ValueError(f"selected missing-value dummies cannot be served (missing encodes as zeros): {unusable}")
    positions = [i for i, c in enumerate(NUMERIC_COLUMNS) if c in selected]
    used = {c: lv for c, lv in levels.items() if any(dummy_name(c, level) in selected for level in lv[1:])}
    return ModelParams(
        numeric_columns=tuple(NUMERIC_COLUMNS[i] for i in positions),
        imputer_mean=tuple(float(imputer.statistics_[i]) for i in positions),
        scaler_mean=tuple(float(scaler.mean_[i]) for i in positions),
        scaler_var=tuple(float(scaler.var_[i]) for i in positions),
        categorical_levels=used,
        features=tuple(selected),
        coefficients=tuple(float(v) for v in coef),
        cutoff=cutoff,
    )


def _check_pruned(params: ModelParams, frame: pd.DataFrame, phat: np.ndarray) -> None:
    """The pruned Pipeline must reproduce the full fit's predictions on the training rows."""
    pipeline = build_pipeline(params)
    served = pipeline.predict_proba(frame)[:, 1]
    gap = float(np.max(np.abs(served - phat), initial=0.0))
    if gap > _PRUNE_TOLERANCE:
        raise RuntimeError(f"pruned pipeline differs from the full fit by {gap:.3g} in phat")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train_file(train_csv: str | Path, out_dir: str | Path) -> tuple[TrainingResult, Artifact]:
    """Train on a CSV file as the notebook does and write the artifact into `out_dir`."""
    source = Path(train_csv)
    frame = pd.read_csv(source)
    result = fit_notebook_model(frame)
    provenance = {
        "procedure": "GLM_Model_26 notebook: split random_state=13, imputer+scaler on 32,000 rows, L1 liblinear "
                     "top 25, unpenalized no-intercept Logit on all rows, cutoff = 75th percentile of phat",
        "training_file": source.name,
        "training_file_sha256": file_sha256(source),
    }
    artifact = save_artifact(out_dir, result.params, "glm-trained", {**result.metadata(), "provenance": provenance})
    return result, artifact
