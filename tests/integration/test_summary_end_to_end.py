"""Job summaries through real Celery workers and Redis equal the figures pandas computes from input and results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from model.synth import write_synth
from tests.integration.summary_check import assert_summary_matches, read_input, summary_via_api

ROWS = 30_000


@pytest.fixture(scope="module")
def dirty_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic rows with faults a real batch has: unknown levels, unreadable money, a column mostly missing."""
    folder = tmp_path_factory.mktemp("summary")
    clean, dirty = folder / "clean.csv", folder / "dirty.csv"
    write_synth(clean, ROWS, seed=21)
    frame = pd.read_csv(clean, dtype=str, keep_default_na=False)
    frame.loc[[10, 2_000, 29_999], "x5"] = "Funday"
    frame.loc[[50, 51], "x12"] = "lots"
    frame.loc[100:6_100, "x44"] = ""  # 20 % missing against 3 % in training
    frame.to_csv(dirty, index=False)
    return dirty


def test_summary_equals_pandas_figures_of_input_and_results(dirty_csv: Path, celery_workers: Any,
                                                            job_driver: Any, scorer: Any) -> None:
    celery_workers.start(concurrency=2)
    submitted = job_driver.submit(dirty_csv, "csv", scorer)
    job = job_driver.wait_for_state(submitted.job_id, {"succeeded", "failed"})
    assert (job["state"], job["rows_failed"]) == ("succeeded", 5)
    summary = summary_via_api(job_driver.service, submitted.job_id)
    results = job_driver.results(submitted.job_id).to_pandas()
    errors = job_driver.errors(submitted.job_id).to_pandas()
    assert_summary_matches(summary, read_input(dirty_csv), results, errors)
    assert summary["rows_failed"]["by_code"] == {"not_a_number": 2, "unknown_level": 3}
    warned = {(w["kind"], w["column"]) for w in summary["drift"]}
    assert ("missing_rate", "x44") in warned and ("rows_failed", None) in warned
    assert not {kind for kind, column in warned if column not in ("x44", None)}  # the rest looks like training


@pytest.mark.reference
def test_real_rows_histogram_and_outcome_equal_the_reference(reference_dir: Path, celery_workers: Any,
                                                              job_driver: Any, scorer: Any) -> None:
    rows = json.loads((reference_dir / "exercise_26_test_rows_0_999.json").read_text())
    reference = pd.read_csv(reference_dir / "reference_phat_0_999.csv")["phat"].to_numpy()
    celery_workers.start()
    submitted = job_driver.with_settings(chunk_rows=300).submit(orjson.dumps(rows), "json", scorer)
    assert job_driver.wait_for_state(submitted.job_id, {"succeeded", "failed"})["state"] == "succeeded"
    summary = summary_via_api(job_driver.service, submitted.job_id)
    expected = np.histogram(reference, bins=20, range=(0.0, 1.0))[0].tolist()
    assert summary["phat_histogram"]["counts"] == expected
    assert summary["business_outcome_1"]["count"] == int((reference >= 0.712).sum()) == 253
    assert summary["rows_scored"] == 1000 and summary["rows_failed"]["total"] == 0
    assert summary["drift"] == []  # the training profile's rates and shares come from these very rows
