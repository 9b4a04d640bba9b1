"""The checker: every row of every job, read back through the API and held to in-process scoring.

For each job: wait until it is closed (riding out 503s and cut connections), download its results and row
errors as Parquet, and count each input row: delivered once, lost (neither scored nor a row error in a
succeeded job), duplicated (delivered more than once). A scored row's `phat` and `business_outcome` must be
bit-for-bit those of scoring the same input in the test process. A failed job must carry a `reason_code`; what
it shows as results is the prefix its committed chunks hold, held to the same checks, and its other rows are
counted as not delivered, never as a success.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from model.readers import iter_chunks

CLOSED = {"succeeded", "failed", "cancelled"}
# The figures of every fault checked in this run, printed in the terminal summary.
FIGURES: list[Figures] = []


def reference(path: Path, scorer: Any) -> pa.Table:
    """`row`, `phat`, `business_outcome` of every row of the CSV at `path`, scored in this process."""
    tables = []
    with path.open("rb") as stream:
        for chunk in iter_chunks(stream, "csv", columns=scorer.required_columns, chunk_rows=50_000):
            tables.append(scorer.score_frame(chunk.table).to_arrow().select(["row", "phat", "business_outcome"]))
    return pa.concat_tables(tables)


@dataclass
class Figures:
    """What the checker found for one fault, over every job it ran."""

    fault: str
    jobs: int = 0
    succeeded: int = 0
    failed: list[str] = field(default_factory=list)  # reason codes of failed jobs
    rows: int = 0
    once: int = 0
    lost: int = 0
    duplicated: int = 0
    not_delivered: int = 0  # rows of failed jobs, not shown as results
    refused: dict[str, int] = field(default_factory=dict)  # late or duplicate commits refused during the fault
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        failed = f", failed {len(self.failed)} ({', '.join(self.failed)})" if self.failed else ""
        refused = ", ".join(f"{reason} {count}" for reason, count in sorted(self.refused.items())) or "none"
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (
            f"{self.fault}: jobs {self.jobs} (succeeded {self.succeeded}{failed}); rows {self.rows}: "
            f"once {self.once}, lost {self.lost}, duplicated {self.duplicated}, not delivered by a failed job "
            f"{self.not_delivered}; commits refused: {refused}{notes}"
        )


def get_json(session: requests.Session, url: str, timeout: float = 120.0) -> dict[str, Any]:
    """GET a JSON answer, waiting out 503 and connection failures (a fault may still be healing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = session.get(url, timeout=15)
            if response.status_code == 200:
                return response.json()
            assert response.status_code == 503, (response.status_code, response.text)
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout}s"
        time.sleep(0.3)


def wait_closed(session: requests.Session, api: str, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Poll the job until it is succeeded, failed or cancelled."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_json(session, f"{api}/v1/jobs/{job_id}")
        if job["state"] in CLOSED:
            return job
        assert time.monotonic() < deadline, f"job {job_id} not closed within {timeout}s: {job}"
        time.sleep(0.3)


def download(session: requests.Session, api: str, job_id: str, kind: str) -> pa.Table:
    """The job's results or errors as one table (Parquet, so floats are exact)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            response = session.get(f"{api}/v1/jobs/{job_id}/{kind}?format=parquet", timeout=60)
            if response.status_code == 200:
                return pq.read_table(io.BytesIO(response.content))
            assert response.status_code == 503, (response.status_code, response.text)
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert time.monotonic() < deadline, f"{kind} of {job_id} could not be downloaded"
        time.sleep(0.3)


def check_scores(results: pa.Table, expected: pa.Table) -> None:
    """Each result row's phat and business_outcome equal in-process scoring of the same input row."""
    if results.num_rows == 0:
        return
    rows = results["row"].to_numpy()
    order = np.argsort(rows, kind="stable")
    want = expected.take(pa.array(rows[order]))
    got = results.take(pa.array(order))
    assert np.array_equal(got["phat"].to_numpy(), want["phat"].to_numpy()), "phat differs from in-process scoring"
    assert np.array_equal(got["business_outcome"].to_numpy(), want["business_outcome"].to_numpy())


def check_jobs(figures: Figures, session: requests.Session, api: str, jobs: list[tuple[str, pa.Table]]) -> Figures:
    """Check every row of every job (see the module's docstring); records and returns `figures`."""
    if not any(figures is known for known in FIGURES):
        FIGURES.append(figures)
    for job_id, expected in jobs:
        job = wait_closed(session, api, job_id)
        results = download(session, api, job_id, "results")
        errors = download(session, api, job_id, "errors")
        total = expected.num_rows
        counts = np.bincount(results["row"].to_numpy(), minlength=total)
        failed_rows = np.unique(errors["row"].to_numpy()) if errors.num_rows else np.array([], np.int64)
        figures.jobs += 1
        figures.rows += total
        figures.duplicated += int((counts > 1).sum())
        figures.once += int((counts == 1).sum())
        check_scores(results, expected)
        if job["state"] == "succeeded":
            figures.succeeded += 1
            delivered = counts > 0
            delivered[failed_rows] = True
            figures.lost += int((~delivered).sum())
            assert failed_rows.size == 0, f"job {job_id}: row errors in synthetic rows: {errors.slice(0, 3)}"
        else:
            assert job["state"] == "failed" and job.get("reason_code"), job
            figures.failed.append(job["reason_code"])
            figures.not_delivered += int((counts == 0).sum())
    return figures
