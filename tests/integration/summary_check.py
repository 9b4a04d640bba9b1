"""A job summary recomputed independently, with pandas, from the job's input file and its downloaded results.

Nothing here uses the model's cleaner or jobs.summary: the input is read with pandas, money is parsed with
pandas string methods, and the figures are taken over the rows the results say were scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

NUMERIC = ("x12", "x44", "x53", "x56", "x58", "x62", "x91")
CATEGORICAL = ("x5", "x31", "x81")


def read_input(path: Path) -> pd.DataFrame:
    """The model's ten input columns of a CSV input, x12 as numbers, categoricals as text (row = position)."""
    frame = pd.read_csv(path, usecols=[*NUMERIC, *CATEGORICAL], dtype={c: "string" for c in ("x12", *CATEGORICAL)})
    text = frame["x12"].str.strip()
    plain = text.str.replace(r"[$,)]", "", regex=True).str.replace("(", "-", regex=False)
    frame["x12"] = pd.to_numeric(plain, errors="coerce")
    return frame


def assert_summary_matches(summary: dict[str, Any], inputs: pd.DataFrame, results: pd.DataFrame,
                           errors: pd.DataFrame) -> None:
    """Every figure of `summary` equals the one computed here from the input rows and the job's outputs."""
    scored = inputs.iloc[results["row"].to_numpy()]
    assert summary["rows_scored"] == len(results)
    bins = pd.cut(results["phat"], np.linspace(0, 1, 21), right=False, labels=False).fillna(19).astype(int)
    assert summary["phat_histogram"]["counts"] == np.bincount(bins, minlength=20).tolist()
    assert sum(summary["phat_histogram"]["counts"]) == len(results)
    outcome = summary["business_outcome_1"]
    assert outcome["count"] == int((results["business_outcome"] == 1).sum())
    assert outcome["count"] == int((results["phat"] >= outcome["cutoff"]).sum())
    by_column = {item["column"]: item for item in summary["inputs"]}
    for column in NUMERIC:
        values = scored[column]
        item = by_column[column]
        assert item["missing"] == int(values.isna().sum()), column
        assert item["mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12), column
        assert item["sd"] == pytest.approx(values.std(ddof=0), rel=1e-9), column
        assert item["mean_shift"] == pytest.approx((values.mean() - item["training_mean"]) / item["training_sd"],
                                                   rel=1e-9, abs=1e-12)
    for column in CATEGORICAL:
        item = by_column[column]
        assert item["missing"] == int(scored[column].isna().sum()), column
        counts = scored[column].str.strip().str.lower().value_counts()
        got = {level["level"].lower(): level["count"] for level in item["levels"] if level["count"]}
        assert got == {level: int(n) for level, n in counts.items()}, column
    failed = errors.assign(column=errors["column"].fillna("_record")).drop_duplicates(["row", "column"])
    assert summary["rows_failed"]["total"] == errors["row"].nunique()
    assert summary["rows_failed"]["by_column"] == failed["column"].value_counts().to_dict()


def summary_via_api(service: Any, job_id: str, tenant: str = "acme") -> dict[str, Any]:
    """GET /v1/jobs/<id>/summary from the real Flask app on the service's Redis, as `tenant`."""
    from dataclasses import replace

    from api.app import create_app

    settings = replace(service.settings, api_keys=f"summary-check-key:{tenant}", auth_mode="required")
    app = create_app(settings, {"TESTING": True, "RATELIMIT_ENABLED": False,
                                "SERVICES": {"redis": service.store.redis, "jobs": service}})
    response = app.test_client().get(f"/v1/jobs/{job_id}/summary",
                                      headers={"Authorization": "Bearer summary-check-key"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()
