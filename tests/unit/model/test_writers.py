"""model.writers: sorted columns, exact numbers, CSV formula defusing, JSON framing, round trips."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from model.readers import iter_chunks
from model.writers import BATCH_ROWS, iter_encoded, write_file


def encoded(tables: list[pa.Table], fmt: str) -> bytes:
    return b"".join(iter_encoded(tables, fmt))


def results(n: int, start: int = 0) -> pa.Table:
    """A result-shaped table with columns deliberately out of order."""
    rng = np.random.default_rng(start)
    return pa.table(
        {
            "x12": rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n),
            "row": pa.array(np.arange(start, start + n), pa.int64()),
            "phat": rng.random(n),
            "business_outcome": pa.array(rng.integers(0, 2, n), pa.int64()),
            "id": pa.array([f"k{i}" for i in range(start, start + n)]),
        }
    )


def parse(body: bytes, fmt: str) -> list[dict]:
    if fmt == "ndjson":
        return [orjson.loads(line) for line in body.splitlines()]
    if fmt == "json":
        return orjson.loads(body)
    return list(csv.DictReader(io.StringIO(body.decode())))


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_keys_in_sorted_order_across_tables(fmt: str) -> None:
    records = parse(encoded([results(3), results(2, start=3)], fmt), fmt)
    assert [list(r) for r in records] == [["business_outcome", "id", "phat", "row", "x12"]] * 5
    assert [int(r["row"]) for r in records] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_numbers_round_trip_exactly_and_ints_stay_ints(fmt: str) -> None:
    table = results(5000)
    records = parse(encoded([table], fmt), fmt)
    assert [r["x12"] for r in records] == table.column("x12").to_pylist()
    assert [r["phat"] for r in records] == table.column("phat").to_pylist()
    assert all(type(r["business_outcome"]) is int and type(r["row"]) is int for r in records)


def test_csv_numbers_round_trip_exactly() -> None:
    table = results(5000)
    records = parse(encoded([table], "csv"), "csv")
    assert [float(r["x12"]) for r in records] == table.column("x12").to_pylist()
    assert [r["business_outcome"] for r in records] == [str(v) for v in table.column("business_outcome").to_pylist()]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_missing_and_non_finite_values(fmt: str) -> None:
    table = pa.table(
        {"a": [1.5, None, float("nan"), float("inf")], "b": pa.array([1, None, 3, 4]), "c": ["x", None, "", "y"]}
    )
    records = parse(encoded([table], fmt), fmt)
    if fmt == "csv":
        assert [(r["a"], r["b"], r["c"]) for r in records] == [
            ("1.5", "1", "x"),
            ("", "", ""),
            ("", "3", ""),
            ("", "4", "y"),
        ]
    else:
        assert [(r["a"], r["b"], r["c"]) for r in records] == [
            (1.5, 1, "x"),
            (None, None, None),
            (None, 3, ""),
            (None, 4, "y"),
        ]


def test_csv_defuses_formula_cells_in_text_columns_only() -> None:
    cells = ["=SUM(A1)", "+1", "-2", "@x", "\tt", "\rr", "ok", "a=b", None]
    table = pa.table({"s": cells, "n": [-1.5] * len(cells)})
    records = parse(encoded([table], "csv"), "csv")
    assert [r["s"] for r in records] == ["'=SUM(A1)", "'+1", "'-2", "'@x", "'\tt", "'\rr", "ok", "a=b", ""]
    assert {r["n"] for r in records} == {"-1.5"}


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_output_is_never_altered_and_escapes_text(fmt: str) -> None:
    cells = ["=SUM(A1)", 'quote " and \\ back', "new\nline", "tab\t", "\x00\x1f", "é ☃ 😀", "\u2028"]
    records = parse(encoded([pa.table({"s": cells})], fmt), fmt)
    assert [r["s"] for r in records] == cells


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_zero_tables_and_empty_tables(fmt: str) -> None:
    assert encoded([], fmt) == {"csv": b"", "ndjson": b"", "json": b"[]\n"}[fmt]
    empty = results(0)
    assert parse(encoded([empty], fmt), fmt) == []
    if fmt == "csv":
        assert encoded([empty], fmt) == b'"business_outcome","id","phat","row","x12"\n'
    assert len(parse(encoded([empty, results(2), empty], fmt), fmt)) == 2


def test_json_array_of_many_tables_is_one_valid_document() -> None:
    tables = [results(n, start=s) for s, n in ((0, 3), (3, 0), (3, BATCH_ROWS + 5), (BATCH_ROWS + 8, 1))]
    records = json.loads(encoded(tables, "json"))
    assert [r["row"] for r in records] == list(range(BATCH_ROWS + 9))


def test_large_tables_come_out_in_bounded_blocks() -> None:
    blocks = list(iter_encoded([results(3 * BATCH_ROWS + 1)], "ndjson"))
    assert len(blocks) == 4
    assert sum(block.count(b"\n") for block in blocks) == 3 * BATCH_ROWS + 1


def test_csv_refuses_tables_with_other_columns() -> None:
    with pytest.raises(ValueError):
        encoded([results(1), pa.table({"row": [1]})], "csv")


def test_error_tables_go_through_the_same_writers() -> None:
    errors = pa.table({"row": pa.array([3, 9], pa.int64()), "column": ["x12", None], "message": ["bad", "=x"]})
    assert parse(encoded([errors], "ndjson"), "ndjson") == [
        {"column": "x12", "message": "bad", "row": 3},
        {"column": None, "message": "=x", "row": 9},
    ]
    assert parse(encoded([errors], "csv"), "csv")[1] == {"column": "", "message": "'=x", "row": "9"}


def test_dictionary_and_boolean_columns() -> None:
    table = pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode(), "t": [True, False, None]})
    assert parse(encoded([table], "ndjson"), "ndjson") == [
        {"d": "a", "t": True},
        {"d": "b", "t": False},
        {"d": "a", "t": None},
    ]
    assert parse(encoded([table], "csv"), "csv")[1] == {"d": "b", "t": "false"}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_unknown_format(fmt: str) -> None:
    with pytest.raises(ValueError):
        encoded([results(1)], fmt + "x")


@pytest.mark.parametrize("suffix", [".csv", ".ndjson", ".jsonl", ".json"])
def test_write_file_by_extension_reads_back(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    table = results(57)
    write_file([table.slice(0, 20), table.slice(20)], path)
    fmt = {".csv": "csv", ".json": "json"}.get(suffix, "ndjson")
    with path.open("rb") as stream:
        chunks = list(iter_chunks(stream, fmt, columns=["x12", "phat"], chunk_rows=10, passthrough="id"))
    back = pa.concat_tables(c.table for c in chunks)
    assert back.column("x12").to_pylist() == table.column("x12").to_pylist()
    assert back.column("id").to_pylist() == table.column("id").to_pylist()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_file_leaves_nothing_when_encoding_fails(tmp_path: Path) -> None:
    def tables():
        yield results(3)
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError):
        write_file(tables(), tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_all_null_and_date_columns() -> None:
    table = pa.table({"n": pa.nulls(2), "d": [datetime.date(2026, 1, 2), None]})
    assert parse(encoded([table], "ndjson"), "ndjson") == [{"d": "2026-01-02", "n": None}, {"d": None, "n": None}]
    assert parse(encoded([table], "csv"), "csv") == [{"d": "2026-01-02", "n": ""}, {"d": "", "n": ""}]


def test_written_file_is_readable_by_others(tmp_path: Path) -> None:
    write_file([results(2)], tmp_path / "out.ndjson")
    assert (tmp_path / "out.ndjson").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_integral_floats_stay_floats_in_json(fmt: str) -> None:
    table = pa.table({"f": [3.0, -0.0, 1e16, 2.5], "i": pa.array([3, 0, 1, 2], pa.int64())})
    records = parse(encoded([table], fmt), fmt)
    assert [type(r["f"]) for r in records] == [float] * 4
    assert [r["f"] for r in records] == [3.0, -0.0, 1e16, 2.5]
    assert [type(r["i"]) for r in records] == [int] * 4


def test_a_formula_like_header_cell_is_defused_in_csv_only() -> None:
    name = '=HYPERLINK("http://evil.example")'
    table = pa.table({"row": [0], name: ["=1+1"], "phat": [0.5]})
    header, line = b"".join(iter_encoded([table], "csv")).decode().splitlines()
    assert header.startswith('"\'=HYPERLINK(')
    assert "'=1+1" in line
    assert orjson.loads(b"".join(iter_encoded([table], "json")))[0][name] == "=1+1"


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_plain_writes_keep_column_order_and_text(fmt: str) -> None:
    table = pa.table({"x63": ["-3.5%", "=1+1"], "-b": [1.5, 2.0], "a": [1, 2]})
    body = b"".join(iter_encoded([table], fmt, plain=True))
    rows = parse(body, fmt)
    assert list(rows[0]) == ["x63", "-b", "a"]
    assert [r["x63"] for r in rows] == ["-3.5%", "=1+1"]
    assert parse(encoded([table], fmt), fmt)[0] == ({"'-b": "1.5", "a": "1", "x63": "'-3.5%"} if fmt == "csv" else
                                                     {"-b": 1.5, "a": 1, "x63": "-3.5%"})


def test_csv_encoded_on_threads_is_the_same_document() -> None:
    tables = [results(BATCH_ROWS + 7, 0), results(5, 50_000), results(BATCH_ROWS * 2, 60_000)]
    assert b"".join(iter_encoded(tables, "csv", threads=3)) == encoded(tables, "csv")


def test_csv_empties_non_finite_floats_in_every_column_shape() -> None:
    # One column whose sum overflows though every value is finite, one with NaN, one with -inf, one all null.
    table = pa.table({
        "big": [1e308, 1e308, 1.5],
        "nan": [1.0, float("nan"), 2.0],
        "ninf": [float("-inf"), 0.25, 3.0],
        "none": pa.array([None, None, None], pa.float64()),
    })
    rows = list(csv.reader(io.StringIO(encoded([table], "csv").decode())))
    assert rows == [["big", "nan", "ninf", "none"], ["1e+308", "1", "", ""], ["1e+308", "", "0.25", ""],
                    ["1.5", "2", "3", ""]]
