"""Job summaries: per-chunk counters equal pandas figures of the same rows, merged once per chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jobs.job_store import ChunkOutput
from jobs.processing import ChunkProcessor
from jobs.service import JobService
from jobs.staging import errors_table
from jobs.summary import ERROR_CODES, ChunkCounters, DriftThresholds, assemble, error_codes
from model.errors import RowError
from model.readers import Chunk
from model.scoring import Scorer


def submit(service: JobService, chunks: list[Chunk]) -> str:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        assert service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    service.seal(job_id, sum(c.rows for c in chunks), len(chunks))
    return job_id


def money(text: pd.Series) -> pd.Series:
    """x12 parsed independently of the model's cleaner (the forms predictq synth writes)."""
    plain = text.str.replace(r"[$,)]", "", regex=True).str.replace("(", "-", regex=False).str.strip()
    return pd.to_numeric(plain)


def test_merged_counters_equal_pandas_figures_and_redelivery_adds_nothing(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], queued: list, synth_csv: Path,
    scorer: Scorer
) -> None:
    job_id = submit(service, chunks)
    for job, index in reversed(queued[1:]):
        processor.process(job, index)
    before = service.store.summary_fields(job_id)
    # A duplicate commit of a chunk (a redelivered task that scored it again) is ignored, summary and all.
    duplicate = service.store.commit_chunk(job_id, 1, ChunkOutput("late", 5, False, False), 5, 0, 100, seconds=0.1,
                                           summary=ChunkCounters({"rows": 5, "outcome:1": 5}, {"sum:x44": 1.0}))
    assert duplicate == "ignored" and service.store.summary_fields(job_id) == before
    processor.process(*queued[0])
    fields = service.store.summary_fields(job_id)

    frame = pd.read_csv(synth_csv, usecols=list(scorer.required_columns))
    results = pa.concat_tables(service.iter_result_tables("acme", job_id)).to_pandas()
    assert int(fields["rows"]) == len(frame) == len(results)
    assert int(fields["outcome:1"]) == int(results["business_outcome"].sum())
    hist = np.histogram(results["phat"], bins=20, range=(0, 1))[0]
    assert [int(fields.get(f"phat:{i:02d}", 0)) for i in range(20)] == hist.tolist()
    frame["x12"] = money(frame["x12"].astype("string"))
    for column in ("x12", "x44", "x91"):
        assert int(fields[f"missing:{column}"]) == int(frame[column].isna().sum())
        assert float(fields[f"sum:{column}"]) == pytest.approx(frame[column].sum(), rel=1e-12)
        assert float(fields[f"sumsq:{column}"]) == pytest.approx((frame[column] ** 2).sum(), rel=1e-12)
    for column in ("x5", "x31", "x81"):
        counts = frame[column].value_counts()
        assert {f"level:{column}:{level}": n for level, n in counts.items()} == {
            f: int(v) for f, v in fields.items() if f.startswith(f"level:{column}:")}
        assert int(fields[f"missing:{column}"]) == int(frame[column].isna().sum())


def test_every_row_error_the_service_words_has_a_code(scorer: Scorer) -> None:
    records = [{"x5": "Funday"}, {"x5": True}, {"x12": "lots"}, {"x44": float("inf")}, {"x44": [1]},
               {"x44": {"a": 1}}, {"x44": "1.5.2"}, 7]
    base = {c: None for c in scorer.required_columns}
    result = scorer.score_records([{**base, **r} if isinstance(r, dict) else r for r in records])
    failed = errors_table([*result.errors, RowError(9, None, "chunk failed after 3 attempts: MemoryError: x"),
                           RowError(10, None, "the chunk's staged input was lost before it could be scored"),
                           RowError(11, None, "expected 100 fields, found 3")])
    codes = dict(zip(failed["row"].to_pylist(), error_codes(failed).tolist(), strict=True))
    assert codes == {0: "unknown_level", 1: "unknown_level", 2: "not_a_number", 3: "not_finite", 4: "not_a_number",
                     5: "not_a_number", 6: "not_a_number", 7: "unreadable_record", 9: "chunk_failed",
                     10: "chunk_failed", 11: "unreadable_record"}
    assert set(codes.values()) <= set(ERROR_CODES)


def test_a_failed_chunk_counts_its_rows_by_code(service: JobService, scorer: Scorer, chunks: list[Chunk],
                                                 settings, queued: list) -> None:
    from tests.unit.jobs.test_processing import Exploding

    processor = ChunkProcessor(service.store, service.blobs, Exploding(scorer), 1, service.enqueue)
    job_id = submit(service, chunks[:1])
    processor.process(job_id, 0)
    fields = service.store.summary_fields(job_id)
    assert fields == {"failed:chunk_failed": "200", "failed_column:_record": "200"}


def test_values_too_large_to_sum_give_no_mean(service: JobService, processor: ChunkProcessor, chunks: list[Chunk],
                                              scorer: Scorer) -> None:
    table = chunks[0].table
    huge = table.set_column(table.column_names.index("x53"), "x53", pa.array([1e200] * table.num_rows))
    job_id = submit(service, [Chunk(huge, [], 0, table.num_rows)])
    processor.process(job_id, 0)
    fields = service.store.summary_fields(job_id)
    assert fields["overflow:x53"] == "1" and "sum:x53" not in fields
    params = scorer.artifact.params
    body = assemble(fields, rows_failed=0, cutoff=scorer.cutoff, numeric=params.numeric_columns,
                    levels=params.categorical_levels, order=scorer.required_columns, profile=scorer.profile,
                    thresholds=DriftThresholds())
    x53 = next(item for item in body["inputs"] if item["column"] == "x53")
    assert x53["mean"] is None and x53["missing"] == 0


@pytest.mark.parametrize(("fields", "kind"), [
    ({"rows": "1000", "outcome:1": "500"}, "outcome_share"),
    ({"rows": "1000", "outcome:1": "250", "missing:x44": "200"}, "missing_rate"),
    ({"rows": "1000", "outcome:1": "250", "sum:x91": "900", "sumsq:x91": "900"}, "mean_shift"),
])
def test_drift_warnings_name_what_is_far_from_training(scorer: Scorer, fields: dict, kind: str) -> None:
    params = scorer.artifact.params
    kwargs = {"rows_failed": 0, "cutoff": scorer.cutoff, "numeric": params.numeric_columns,
              "levels": params.categorical_levels, "order": scorer.required_columns, "profile": scorer.profile}
    drift = assemble(fields, thresholds=DriftThresholds(), **kwargs)["drift"]
    assert kind in {w["kind"] for w in drift}
    assert all(w["message"] for w in drift)
    assert kind not in {w["kind"] for w in assemble(fields, thresholds=DriftThresholds(min_rows=1001),
                                                     **kwargs)["drift"]}


@pytest.mark.parametrize("purge", [False, True])
def test_a_purging_close_drops_the_summary_with_the_results(
    service: JobService, processor: ChunkProcessor, chunks: list[Chunk], purge: bool
) -> None:
    job_id = service.create("acme", fmt="csv")["id"]
    for index, chunk in enumerate(chunks):
        service.stage_chunk(job_id, index, chunk.table, chunk.errors)
    processor.process(job_id, 0)
    assert service.store.summary_fields(job_id)["rows"] == "200"
    service.store.close(job_id, "failed", "upload_incomplete", "cut", purge=purge)
    assert bool(service.store.summary_fields(job_id)) is not purge
