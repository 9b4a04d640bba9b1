"""The scoring API: inputs of every shape, row errors that never fail other rows, sorted outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from model.errors import RowError, SchemaError
from model.scoring import Scorer, score_chunk


def test_outputs_sorted_and_typed(scorer: Scorer, record: dict[str, Any]) -> None:
    result = scorer.score_records([record])
    out = result.to_records()[0]
    assert list(out) == sorted(out) == scorer.output_columns
    assert len(out) == 27 and out["business_outcome"] in (0, 1)
    assert type(out["business_outcome"]) is int and type(out["phat"]) is float and type(out["x44"]) is float
    assert list(result.outputs.columns) == scorer.output_columns
    assert scorer.output_columns.index("x58") < scorer.output_columns.index("x5_monday")


def test_business_outcome_is_phat_at_or_above_cutoff(scorer: Scorer, record: dict[str, Any]) -> None:
    batch = [dict(record, x91=v, x12=m) for v in np.linspace(-3, 3, 13) for m in (-9000.0, 0.0, 9000.0)]
    result = scorer.score_records(batch)
    assert scorer.cutoff == 0.712
    np.testing.assert_array_equal(result.business_outcome, (result.phat >= 0.712).astype(int))
    assert 0 < result.business_outcome.sum() < len(batch)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("x5", "funday", "unknown level 'funday'"),
        ("x81", "Octember", "unknown level 'Octember'"),
        ("x12", "$6,88x.34", "cannot read '$6,88x.34' as an amount of money"),
        ("x44", "abc", "cannot read 'abc' as a number"),
        ("x53", [1, 2], "expected a number, got list"),
        ("x56", {"v": 1}, "expected a number, got dict"),
        ("x58", True, "expected a number, got bool"),
        ("x31", 7, "expected one of america, asia, germany, japan, got int 7"),
        ("x44", 10**400, "not a finite number in float64 range: 1000"),
        ("x44", "9" * 500, "cannot read '9999"),
        ("x44", "1\ud800", "cannot read '1\\ud800' as a number"),
        ("x5", "mon\ud800day", "unknown level 'mon\\ud800day'"),
    ],
)
def test_row_error_names_row_column_problem_and_spares_others(scorer: Scorer, record: dict[str, Any], column: str,
                                                              value: Any, fragment: str) -> None:
    result = scorer.score_records([record, dict(record, **{column: value}), record])
    assert [e.row for e in result.errors] == [1] and result.errors[0].column == column
    assert fragment in result.errors[0].message
    assert result.rows.tolist() == [0, 2] and result.outputs.index.tolist() == [0, 2]
    assert result.phat[0] == result.phat[1]


def test_long_bad_values_are_shortened_in_messages(scorer: Scorer, record: dict[str, Any]) -> None:
    result = scorer.score_records([dict(record, x5="z" * 10_000)])
    assert len(result.errors[0].message) < 200 and result.errors[0].message.startswith("unknown level 'zzz")


def test_several_bad_cells_in_one_row_each_reported(scorer: Scorer, record: dict[str, Any]) -> None:
    result = scorer.score_records([dict(record, x5="?", x12="?")])
    assert [(e.row, e.column) for e in result.errors] == [(0, "x5"), (0, "x12")] and not result.to_records()


def test_record_that_is_not_an_object(scorer: Scorer, record: dict[str, Any]) -> None:
    result = scorer.score_records([record, [1, 2], "text", record])
    assert result.errors == [RowError(1, None, "record is not an object"), RowError(2, None, "record is not an object")]
    assert result.rows.tolist() == [0, 3]


def test_absent_keys_are_missing_and_extra_keys_ignored(scorer: Scorer, record: dict[str, Any]) -> None:
    sparse = {k: v for k, v in record.items() if k not in ("x44", "x31")}
    result = scorer.score_records([dict(sparse, x999="whatever")])
    assert not result.errors
    out = result.to_records()[0]
    assert out["x31_asia"] == out["x31_germany"] == out["x31_japan"] == 0.0


def test_batch_with_a_sparse_record_scores_each_row_as_alone(scorer: Scorer, record: dict[str, Any]) -> None:
    sparse = {k: v for k, v in record.items() if k != "x44"}
    batch = scorer.score_records([record, sparse, dict(record, x44=-1.5)]).to_records()
    alone = [scorer.score_records([r]).to_records()[0] for r in (record, sparse, dict(record, x44=-1.5))]
    assert batch == alone and batch[1]["x44"] != batch[0]["x44"]


def test_records_are_plain_ints_and_floats(scorer: Scorer, record: dict[str, Any]) -> None:
    out = scorer.score_records([record, record]).to_records(include_row=True)
    assert [type(r["row"]) for r in out] == [int, int] and out[1]["row"] == 1
    assert type(out[0]["business_outcome"]) is int and type(out[0]["phat"]) is float and list(out[0]) == sorted(out[0])


def test_json_is_what_orjson_writes_for_the_records(scorer: Scorer, record: dict[str, Any]) -> None:
    varied = [record, dict(record, x44=None), dict(record, x44=1e-300), dict(record, x53=-2.5e12),
              dict(record, x5="bad")]
    result = scorer.score_records(varied)
    assert len(result.rows) == 4
    assert result.to_json() == orjson.dumps(result.to_records())
    assert orjson.loads(result.to_json()) == result.to_records()
    assert scorer.score_records([]).to_json() == b"[]"


def test_frame_inputs_agree(scorer: Scorer, record: dict[str, Any]) -> None:
    records = [record, dict(record, x12="($5,032.58)", x44="0.3", x5=" Sunday"), dict(record, x62=None)]
    by_records = scorer.score_records(records)
    frame = pd.DataFrame(records)
    by_pandas = scorer.score_frame(frame)
    by_arrow = scorer.score_frame(pa.Table.from_pandas(frame.astype({"x44": "str"})))
    for other in (by_pandas, by_arrow):
        np.testing.assert_array_equal(other.phat, by_records.phat)
        np.testing.assert_array_equal(other.inputs, by_records.inputs)


def test_row_column_numbers_outputs_and_errors(scorer: Scorer, record: dict[str, Any]) -> None:
    table = pa.table({**{k: [str(v), "bad" if k == "x44" else str(v)] for k, v in record.items() if k != "x0"},
                      "row": pa.array([40, 41], pa.int64())})
    result = scorer.score_frame(table)
    assert result.outputs.index.tolist() == [40] and result.errors[0].row == 41
    assert result.to_records(include_row=True)[0]["row"] == 40


def test_frame_missing_required_columns_is_schema_error(scorer: Scorer, record: dict[str, Any]) -> None:
    frame = pd.DataFrame([record]).drop(columns=["x12", "x81"])
    with pytest.raises(SchemaError, match="x12, x81") as caught:
        scorer.score_frame(frame)
    assert caught.value.missing == ["x12", "x81"]


def test_empty_batch(scorer: Scorer) -> None:
    result = scorer.score_records([])
    assert result.to_records() == [] and result.errors == [] and result.outputs.shape == (0, 27)


def test_inputs_too_extreme_to_score_are_row_errors(scorer: Scorer, record: dict[str, Any]) -> None:
    result = scorer.score_records([dict(record, x44=1e308, x91=1e308), record])
    assert result.errors == [RowError(0, None, "values too extreme to score")] and result.rows.tolist() == [1]


def test_score_chunk_keeps_each_scored_rows_own_passthrough_value(scorer: Scorer, record: dict[str, Any]) -> None:
    rows = [record, dict(record, x5="funday"), dict(record, x91=1.5), dict(record, x12="$1x"), dict(record, x44=-2.0)]
    inputs = pa.Table.from_pylist(rows).append_column("row", pa.array([3, 4, 7, 8, 12], pa.int64()))
    inputs = inputs.append_column("cid", pa.array(["a", "b", "c", "d", "e"]))
    scored, table = score_chunk(scorer, inputs, "cid")
    assert [e.row for e in scored.errors] == [4, 8]
    assert table.column_names == sorted(table.column_names) and "cid" in table.column_names
    assert table["row"].to_pylist() == [3, 7, 12] and table["cid"].to_pylist() == ["a", "c", "e"]
    rest = table.drop_columns("cid")
    assert rest.equals(scored.to_arrow().select(rest.column_names))
