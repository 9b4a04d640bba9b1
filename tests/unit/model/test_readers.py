"""model.readers: formats, typing, row indices, chunking and every ReadError code."""

from __future__ import annotations

import io
import json
import tracemalloc

import pyarrow as pa
import pytest

from model.errors import PredictqError, RowError
from model.readers import (
    MAX_RECORD_BYTES,
    READ_BLOCK,
    Chunk,
    ReadError,
    format_from_path,
    iter_chunks,
)
from model.readers import source as byte_source

COLS = ["a", "b"]


class CountingStream:
    """A binary stream that returns at most `step` bytes per read and counts what it handed out."""

    def __init__(self, data: bytes, step: int | None = None) -> None:
        self.data = data
        self.step = step
        self.pos = 0
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        n = len(self.data) - self.pos if n < 0 else n
        if self.step:
            n = min(n, self.step)
        part = self.data[self.pos : self.pos + n]
        self.pos += len(part)
        return part


def read(data: bytes, fmt: str, chunk_rows: int = 1000, columns: list[str] = COLS, **kw: object) -> list[Chunk]:
    return list(iter_chunks(io.BytesIO(data), fmt, columns=columns, chunk_rows=chunk_rows, **kw))


def rows_of(chunks: list[Chunk]) -> list[dict]:
    return [r for c in chunks for r in c.table.to_pylist()]


def errors_of(chunks: list[Chunk]) -> list[RowError]:
    return [e for c in chunks for e in c.errors]


def read_error(data: bytes, fmt: str, **kw: object) -> ReadError:
    with pytest.raises(ReadError) as info:
        read(data, fmt, **kw)
    return info.value


def encode(records: list[dict], fmt: str) -> bytes:
    """Records as a body of `fmt` (CSV cells written as given, None as empty)."""
    if fmt == "ndjson":
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)
    if fmt == "json":
        return json.dumps(records).encode()
    names = list(records[0])
    lines = [",".join(names)] + [",".join("" if r[n] is None else str(r[n]) for n in names) for r in records]
    return ("\n".join(lines) + "\n").encode()


SAMPLE = [{"a": i * 0.5, "b": f"lvl{i % 3}", "c": i} for i in range(23)]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_reads_kept_columns_typed_with_row_index(fmt: str) -> None:
    chunks = read(encode(SAMPLE, fmt), fmt)
    table = pa.concat_tables(c.table for c in chunks)
    assert table.column_names == ["row", "a", "b"]
    assert table.schema.field("row").type == pa.int64()
    assert table.schema.field("a").type == pa.float64()
    assert table.schema.field("b").type == pa.string()
    assert table.column("row").to_pylist() == list(range(23))
    assert table.column("a").to_pylist() == [r["a"] for r in SAMPLE]
    assert table.column("b").to_pylist() == [r["b"] for r in SAMPLE]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 23, 100])
def test_any_chunk_size_gives_the_same_rows(fmt: str, chunk_rows: int) -> None:
    chunks = read(encode(SAMPLE, fmt), fmt, chunk_rows=chunk_rows)
    assert all(c.rows <= chunk_rows for c in chunks)
    assert [c.first_row for c in chunks] == list(range(0, 23, chunk_rows))
    assert sum(c.rows for c in chunks) == 23
    assert rows_of(chunks) == rows_of(read(encode(SAMPLE, fmt), fmt))


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_tiny_reads_from_the_stream_change_nothing(fmt: str) -> None:
    body = encode(SAMPLE, fmt)
    chunks = list(iter_chunks(CountingStream(body, step=3), fmt, columns=COLS, chunk_rows=5))
    assert rows_of(chunks) == rows_of(read(body, fmt))


def test_csv_bad_lines_are_row_errors_and_indices_stay_right() -> None:
    body = b'a,b,c\n1,x,3\n4,5\n"multi\nline",y,8\n9,10,11,12\n\n13,z,15\n'
    chunks = read(body, "csv", chunk_rows=2)
    assert [r["row"] for r in rows_of(chunks)] == [0, 2, 4]
    assert rows_of(chunks)[1]["a"] == "multi\nline"
    assert [(e.row, e.column) for e in errors_of(chunks)] == [(1, None), (3, None)]
    assert "expected 3 fields, found 2" in errors_of(chunks)[0].message
    assert [(c.first_row, c.rows) for c in chunks] == [(0, 2), (2, 2), (4, 1)]


def test_csv_bad_lines_at_the_end_are_counted() -> None:
    chunks = read(b"a,b\n1,2\n3\n4\n", "csv")
    assert [r["row"] for r in rows_of(chunks)] == [0]
    assert [e.row for e in errors_of(chunks)] == [1, 2]
    assert sum(c.rows for c in chunks) == 3


def test_csv_bad_lines_across_many_blocks_keep_their_indices() -> None:
    lines = [b"x,y" if i % 997 == 5 else f"{i},{i}".encode() for i in range(300_000)]
    chunks = read(b"a,b\n" + b"\n".join(lines) + b"\n", "csv", chunk_rows=25_000)
    table = pa.concat_tables(c.table for c in chunks)
    bad = [i for i in range(300_000) if i % 997 == 5]
    assert [e.row for e in errors_of(chunks)] == []
    assert table.num_rows == 300_000 and table.column("b").type == pa.string()
    lines = [b"1" if i % 997 == 5 else f"{i},{i}".encode() for i in range(300_000)]
    chunks = read(b"a,b\n" + b"\n".join(lines) + b"\n", "csv", chunk_rows=25_000)
    assert [e.row for e in errors_of(chunks)] == bad
    rows = pa.concat_tables(c.table for c in chunks).column("row").to_numpy()
    assert rows.tolist() == [i for i in range(300_000) if i % 997 != 5]
    assert pa.concat_tables(c.table for c in chunks).column("a").to_pylist()[:3] == [0.0, 1.0, 2.0]


def test_csv_columns_typed_per_chunk_mixed_text_kept_exactly() -> None:
    chunks = read(b"a,b\n1.50,x\n$2,y\n3,z\n4,w\n", "csv", chunk_rows=2)
    assert chunks[0].table.column("a").to_pylist() == ["1.50", "$2"]
    assert chunks[1].table.column("a").to_pylist() == [3.0, 4.0]


@pytest.mark.parametrize("cell", ["", "NA", "NaN", "nan", "null"])
def test_csv_missing_markers_are_null(cell: str) -> None:
    chunks = read(f"a,b\n{cell},1\n2,1\n".encode(), "csv")
    assert chunks[0].table.column("a").to_pylist() == [None, 2.0]


def test_csv_infinite_number_is_a_row_error_naming_the_column() -> None:
    chunks = read(b"a,b\n1,2\ninf,3\n1e400,4\n5,6\n", "csv")
    assert [r["row"] for r in rows_of(chunks)] == [0, 3]
    assert errors_of(chunks) == [RowError(1, "a", "not a finite number"), RowError(2, "a", "not a finite number")]


def test_csv_skips_other_columns_and_keeps_passthrough() -> None:
    chunks = read(b"z,b,id,a,q\n9,x,k1,1,8\n", "csv", passthrough="id")
    assert rows_of(chunks) == [{"row": 0, "a": 1.0, "b": "x", "id": "k1"}]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_passthrough_column_absent_from_header_or_first_record_is_missing_columns(fmt: str) -> None:
    error = read_error(encode(SAMPLE[:2], fmt), fmt, passthrough="id")
    assert (error.code, error.missing) == ("missing_columns", ["id"])


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_passthrough_key_absent_after_the_first_record_is_null(fmt: str) -> None:
    body = encode([{"a": 1, "b": "x", "id": 5}, {"a": 2, "b": "y"}], fmt)
    assert [r["id"] for r in rows_of(read(body, fmt, passthrough="id"))] == [5, None]


BIG_ID = 9007199254740993  # 2**53 + 1: the first integer a float64 cannot hold


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_large_integer_ids_stay_exact_int64(fmt: str) -> None:
    body = encode([{"a": 1, "b": "x", "id": BIG_ID}, {"a": 2, "b": "y", "id": -(2**63)}], fmt)
    table = read(body, fmt, passthrough="id")[0].table
    assert table.column("id").type == pa.int64()
    assert table.column("id").to_pylist() == [BIG_ID, -(2**63)]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([7, None, 8], [7, None, 8]),
        ([7, "k8"], ["7", "k8"]),
        ([7, 7.5], ["7", "7.5"]),
        ([7.0, 8.0], ["7.0", "8.0"]),
        ([2**63, 1], ["9223372036854775808", "1"]),
        ([None, None], [None, None]),
    ],
)
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_ids_are_int64_or_exact_text_never_float(fmt: str, ids: list, expected: list) -> None:
    body = encode([{"a": 1, "b": "x", "id": i} for i in ids], fmt)
    column = read(body, fmt, passthrough="id")[0].table.column("id")
    assert column.to_pylist() == expected
    assert not pa.types.is_floating(column.type)


def test_json_id_past_float64_is_exact_text_not_a_row_error() -> None:
    huge = "9" * 400
    chunks = read(f'{{"a": 1, "b": "x", "id": {huge}}}\n'.encode(), "ndjson", passthrough="id")
    assert errors_of(chunks) == [] and rows_of(chunks)[0]["id"] == huge


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["7", "", "-3"], [7, None, -3]),
        (["007", "7"], ["007", "7"]),
        (["7", "7.0"], ["7", "7.0"]),
        (["9223372036854775808"], ["9223372036854775808"]),
        (["k1", "2"], ["k1", "2"]),
    ],
)
def test_csv_ids_are_int64_only_when_written_as_plain_integers(cells: list[str], expected: list) -> None:
    body = ("a,b,id\n" + "".join(f"1,x,{cell}\n" for cell in cells)).encode()
    assert [r["id"] for r in rows_of(read(body, "csv", passthrough="id"))] == expected


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_one_id_is_never_text_in_one_chunk_and_float_in_another(fmt: str) -> None:
    records = [{"a": 1, "b": "x", "id": 7}, {"a": 1, "b": "x", "id": 7}, {"a": 1, "b": "x", "id": "k"}]
    chunks = read(encode(records, fmt), fmt, chunk_rows=1, passthrough="id")
    assert [c.table.column("id").to_pylist() for c in chunks] == [[7], [7], ["k"]]
    assert all(not pa.types.is_floating(c.table.column("id").type) for c in chunks)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_utf8_bom_is_accepted(fmt: str) -> None:
    assert rows_of(read(b"\xef\xbb\xbf" + encode(SAMPLE[:3], fmt), fmt)) == rows_of(read(encode(SAMPLE[:3], fmt), fmt))


def test_ndjson_bad_lines_are_row_errors() -> None:
    body = b'{"a":1,"b":"x"}\n\nnot json\n[1,2]\n{"a":2,"b":"y"}\r\n{"a":3,"b":"z"}'
    chunks = read(body, "ndjson", chunk_rows=2)
    assert [r["row"] for r in rows_of(chunks)] == [0, 3, 4]
    assert [(e.row, e.column) for e in errors_of(chunks)] == [(1, None), (2, None)]
    assert errors_of(chunks)[0].message.startswith("not valid JSON")
    assert errors_of(chunks)[1].message == "not a JSON object"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_values_policy(fmt: str) -> None:
    records = [
        b'{"a":1,"b":"x"}',
        b'{"a":NaN,"b":"x"}',  # NaN is missing
        b'{"a":Infinity,"b":"x"}',
        b'{"a":-Infinity,"b":"x"}',
        b'{"a":1e400,"b":"x"}',
        b'{"a":[1],"b":"x"}',
        b'{"a":{"k":1},"b":"x"}',
        b'{"a":true,"b":"x"}',
        b'{"a":null,"b":"x"}',
        b'{"b":"x"}',
    ]
    body = b"\n".join(records) if fmt == "ndjson" else b"[" + b",\n".join(records) + b"]"
    chunks = read(body, fmt)
    assert [(r["row"], r["a"]) for r in rows_of(chunks)] == [(0, 1.0), (1, None), (8, None), (9, None)]
    assert [(e.row, e.column) for e in errors_of(chunks)] == [(i, "a") for i in range(2, 8)]
    assert [e.message for e in errors_of(chunks)][:3] == ["not a finite number"] * 3
    assert "list" in errors_of(chunks)[3].message and "object" in errors_of(chunks)[4].message
    assert "boolean" in errors_of(chunks)[5].message


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_numbers_mixed_with_text_become_their_shortest_repr(fmt: str) -> None:
    records = [{"a": 0.1, "b": "x"}, {"a": "$5", "b": 1}, {"a": 12345678901234567890, "b": 2.5e-8}]
    chunks = read(encode(records, fmt), fmt)
    assert [r["a"] for r in rows_of(chunks)] == ["0.1", "$5", "12345678901234567890"]
    assert [r["b"] for r in rows_of(chunks)] == ["x", "1", "2.5e-08"]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_error_in_two_columns_gives_one_row_error(fmt: str) -> None:
    chunks = read(encode([{"a": [1], "b": {"c": 1}}, {"a": 1, "b": "x"}], fmt), fmt)
    assert errors_of(chunks) == [RowError(0, "a", "a list where a number or text belongs")]
    assert [r["row"] for r in rows_of(chunks)] == [1]


def test_json_array_elements_that_are_not_objects_are_row_errors() -> None:
    chunks = read(b'[{"a":1,"b":"x"}, 5, "s", [1], null, {"a":2,"b":"y"}]', "json", chunk_rows=4)
    assert [r["row"] for r in rows_of(chunks)] == [0, 5]
    assert [e.row for e in errors_of(chunks)] == [1, 2, 3, 4]


def test_json_array_boundaries_inside_strings_and_nested_values() -> None:
    tricky = [{"a": i, "b": "},{" * (i % 3) + '"}, {' + "\\", "n": [{"x": {"y": 1}}, {}]} for i in range(25_000)]
    body = json.dumps(tricky, indent=1).encode()
    assert len(body) > 2 * READ_BLOCK
    chunks = read(body, "json", chunk_rows=9_999)
    assert [r["b"] for r in rows_of(chunks)] == [t["b"] for t in tricky]
    assert [r["row"] for r in rows_of(chunks)] == list(range(25_000))


def test_json_array_of_scalars_spanning_blocks() -> None:
    body = json.dumps([{"a": 1, "b": "x"}, *range(400_000)]).encode()
    chunks = read(body, "json", chunk_rows=100_000)
    assert sum(c.rows for c in chunks) == 400_001
    assert len(errors_of(chunks)) == 400_000


def test_single_top_level_object_is_one_record() -> None:
    assert rows_of(read(b' {"a": 1, "b": "x"} \n', "json")) == [{"row": 0, "a": 1.0, "b": "x"}]


@pytest.mark.parametrize(
    ("body", "fmt", "code"),
    [
        (b"", "csv", "empty"),
        (b"\n\n", "csv", "empty"),
        (b"a,b\n", "csv", "empty"),
        (b"a,b", "csv", "empty"),
        (b"", "ndjson", "empty"),
        (b"\n \n", "ndjson", "empty"),
        (b"", "json", "empty"),
        (b" [ ] ", "json", "empty"),
        (b"a,c\n1,2\n", "csv", "missing_columns"),
        (b'{"a":1}\n{"a":1,"b":2}\n', "ndjson", "missing_columns"),
        (b'[{"a":1}]', "json", "missing_columns"),
        (b"a,b,a\n1,2,3\n", "csv", "duplicate_columns"),
        (b"a;b;c\n1;2;3\n", "csv", "delimiter"),
        (b"a\tb\n1\t2\n", "csv", "delimiter"),
        (b'[{"a":1,"b":2} {"a":1,"b":2}]', "json", "malformed"),
        (b'[{"a":1,"b":2},]', "json", "malformed"),
        (b'[{"a":1,"b":2}', "json", "malformed"),
        (b'[{"a":1,"b":2}] x', "json", "malformed"),
        (b"12", "json", "malformed"),
        (b'{"a":1,"b":2} {"a":1,"b":2}', "json", "malformed"),
        (b"[" + b"[" * 2000 + b"]" * 2000 + b"]", "json", "too_deep"),
        (b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", "json", "too_deep"),
        (b"a,b\n1,\xff\n", "csv", "not_utf8"),
        (b'{"a":1,"b":"\xc3"}\n', "ndjson", "not_utf8"),
        (b'[{"a":1,"b":"\xed\xa0\x80"}]', "json", "not_utf8"),
    ],
)
def test_whole_body_errors(body: bytes, fmt: str, code: str) -> None:
    error = read_error(body, fmt)
    assert error.code == code
    assert isinstance(error, PredictqError)
    assert error.message and error.as_dict()["code"] == code


def test_missing_columns_are_named_and_raised_before_reading_on() -> None:
    stream = CountingStream(b"x,y,a\n" + b"1,2,3\n" * 2_000_000)
    with pytest.raises(ReadError) as info:
        next(iter_chunks(stream, "csv", columns=["a", "b", "c"], chunk_rows=10))
    assert info.value.code == "missing_columns" and "b, c" in info.value.message
    assert stream.pos <= 2 * READ_BLOCK


def test_malformed_json_gives_line_and_column() -> None:
    body = b'[\n  {"a": 1, "b": "x"},\n  {"a": 2, "b": "\xc3\xa9" x}\n]'
    error = read_error(body, "json")
    assert (error.code, error.line, error.column) == ("malformed", 3, 20)


def test_malformed_json_far_into_the_body_gives_line_and_column() -> None:
    good = b'{"a": 1, "b": "x"},\n' * 200_000
    error = read_error(b"[" + good + b'{"a": 1, "b": "x"}}]', "json")
    assert (error.line, error.column) == (200_001, 19)


def test_not_utf8_gives_offset_and_line() -> None:
    error = read_error(b"a,b\n1,2\n3,\xff\n", "csv")
    assert error.line == 3 and "offset 10" in error.message


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_too_large_stops_reading(fmt: str) -> None:
    body = encode(SAMPLE * 8_000, fmt)
    stream = CountingStream(body, step=4096)
    with pytest.raises(ReadError) as info:
        for _ in iter_chunks(stream, fmt, columns=COLS, chunk_rows=1000, max_bytes=READ_BLOCK):
            pass
    assert info.value.code == "too_large"
    assert stream.pos <= READ_BLOCK + 4096 < len(body)  # not one read more than the one crossing the limit


def test_body_exactly_at_max_bytes_is_read() -> None:
    body = encode(SAMPLE, "ndjson")
    assert len(rows_of(read(body, "ndjson", max_bytes=len(body)))) == 23
    assert read_error(body, "ndjson", max_bytes=len(body) - 1).code == "too_large"


@pytest.mark.parametrize(
    ("body", "fmt"),
    [
        (b"a,b\n1," + b"x" * (3 * MAX_RECORD_BYTES) + b"\n", "csv"),
        (b'{"a":1,"b":"' + b"x" * (3 * MAX_RECORD_BYTES) + b'"}\n', "ndjson"),
        (b'[{"a":1,"b":"' + b"x" * (3 * MAX_RECORD_BYTES) + b'"}]', "json"),
        (b'{"a":1,"b":"' + b"x" * (3 * MAX_RECORD_BYTES) + b'"}', "json"),
        (b"a," * MAX_RECORD_BYTES + b"b\n1,2\n", "csv"),
    ],
)
def test_a_record_over_the_bound_is_line_too_long(body: bytes, fmt: str) -> None:
    assert read_error(body, fmt).code == "line_too_long"


def test_unknown_format_and_bad_chunk_rows() -> None:
    assert read_error(b"a,b\n1,2\n", "xml").code == "unsupported_format"
    with pytest.raises(ValueError):
        read(b"a,b\n1,2\n", "csv", chunk_rows=0)


@pytest.mark.parametrize(
    ("path", "fmt"), [("x.csv", "csv"), ("d/x.NDJSON", "ndjson"), ("x.jsonl", "ndjson"), ("x.json", "json")]
)
def test_format_from_path(path: str, fmt: str) -> None:
    assert format_from_path(path) == fmt


def test_format_from_unknown_path() -> None:
    with pytest.raises(ReadError) as info:
        format_from_path("x.parquet")
    assert info.value.code == "unsupported_format"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
@pytest.mark.parametrize("digits", [400, 5000])  # 5000: past Python's own int <-> text digit limit
def test_integer_beyond_float_range_is_a_row_error(fmt: str, digits: int) -> None:
    body = b'{"a":1,"b":"w"}\n{"a":-1' + b"0" * digits + b',"b":"x"}\n{"a":2,"b":"y"}\n'
    if fmt == "json":
        body = b"[" + body.strip().replace(b"\n", b",") + b"]"
    chunks = read(body, fmt)
    assert errors_of(chunks) == [RowError(1, "a", "not a finite number")]
    assert [r["row"] for r in rows_of(chunks)] == [0, 2]


def test_csv_header_then_blank_lines_is_empty() -> None:
    assert read_error(b"a,b\n\n\n", "csv").code == "empty"


def test_csv_long_record_after_many_rows_is_line_too_long() -> None:
    body = b"a,b\n" + b"1,2\n" * 500_000 + b"1," + b"x" * (3 * MAX_RECORD_BYTES) + b"\n"
    error = read_error(body, "csv")
    assert error.code == "line_too_long" and error.line is not None and error.line > 1


@pytest.mark.parametrize("body", [b"\n\na,b\r1,2\r3,4\r", b"a,b\r\n1,2\r\n3,4", b"a,b\n1,2\n3,4\n"])
def test_csv_line_endings_and_leading_blank_lines(body: bytes) -> None:
    assert rows_of(read(body, "csv")) == [{"row": 0, "a": 1.0, "b": 2.0}, {"row": 1, "a": 3.0, "b": 4.0}]


def test_csv_header_that_cannot_be_parsed_is_malformed() -> None:
    assert read_error(b'"a,b\n1,2\n', "csv").code == "malformed"


class RepeatedBody:
    """A large body made on the fly from one repeated unit, so the test itself holds almost none of it."""

    def __init__(self, head: bytes, unit: bytes, times: int, tail: bytes) -> None:
        self.parts = iter([head, *([unit] * times), tail])
        self.buf = b""
        self.size = len(head) + len(unit) * times + len(tail)

    def read(self, n: int = -1) -> bytes:
        while len(self.buf) < n and (part := next(self.parts, None)) is not None:
            self.buf += part
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def record(i: int) -> str:
    return "{" + ",".join(f'"k{j}":{i}.5' for j in range(18)) + f',"a":{i},"b":"lvl{i % 5}"' + "}"


BODIES = {
    "csv": (
        ",".join([f"k{j}" for j in range(18)] + ["a", "b"]) + "\n",
        "".join(f"{f'{i}.5,' * 18}{i},lvl{i % 5}\n" for i in range(1000)),
        "",
    ),
    "ndjson": ("", "".join(record(i) + "\n" for i in range(1000)), ""),
    "json": ("[", "".join(record(i) + "," for i in range(1000)), record(0) + "]"),
}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_memory_stays_bounded_by_block_and_chunk(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(byte_source, "READ_BLOCK", 1 << 16)  # small blocks: the bound shows on a small body
    head, unit, tail = (part.encode() for part in BODIES[fmt])
    list(iter_chunks(RepeatedBody(head, unit, 2, tail), fmt, columns=COLS, chunk_rows=2000))  # one-time imports
    body = RepeatedBody(head, unit, 60, tail)
    tracemalloc.start()
    try:
        rows = sum(c.rows for c in iter_chunks(body, fmt, columns=COLS, chunk_rows=2000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 60_000 + (fmt == "json")
    assert body.size > 5 * 2**20
    assert peak < 3 * 2**20


@pytest.mark.parametrize("line", [b'{"a":"\\ud800","b":1}', b'{"a":1,"b":2,"\\udfff":3}'])
def test_lone_surrogate_escape_is_a_row_error(line: bytes) -> None:
    chunks = read(line + b'\n{"a":1,"b":2}\n', "ndjson")
    assert [(e.row, e.column) for e in errors_of(chunks)] == [(0, None)]
    assert [r["row"] for r in rows_of(chunks)] == [1]


def test_required_keys_are_checked_on_the_first_readable_record() -> None:
    body = b"oops\n" * 200_000 + b'{"a":1}\n'
    error = read_error(body, "ndjson")
    assert error.code == "missing_columns" and error.missing == ["b"]
    assert error.as_dict() == {"code": "missing_columns", "message": error.message, "missing": ["b"]}


def test_missing_csv_columns_are_listed() -> None:
    assert read_error(b"a,x\n1,2\n", "csv", columns=["a", "b", "c"]).missing == ["b", "c"]


def test_arguments_are_checked_before_any_reading() -> None:
    stream = CountingStream(b"a,b\n1,2\n")
    with pytest.raises(ReadError) as info:
        iter_chunks(stream, "csv", columns=COLS, chunk_rows=10, passthrough="row")
    assert info.value.code == "invalid_passthrough"
    with pytest.raises(ReadError):
        iter_chunks(stream, "xml", columns=COLS, chunk_rows=10)
    with pytest.raises(ValueError):
        iter_chunks(stream, "csv", columns=COLS, chunk_rows=0)
    assert stream.reads == 0


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_blank_body_of_many_blocks_is_empty_without_holding_it(fmt: str) -> None:
    body = RepeatedBody(b"", b"\n" * READ_BLOCK, 8, b"")
    tracemalloc.start()
    try:
        with pytest.raises(ReadError) as info:
            list(iter_chunks(body, fmt, columns=COLS, chunk_rows=10))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "empty"
    assert peak < 4 * READ_BLOCK


def test_csv_stray_quotes_inside_fields_are_text_across_blocks() -> None:
    lines = [f'{i},5" pipe' if i % 2 else f'{i},"quoted, with ""escapes""\nand a break"' for i in range(120_000)]
    body = b"a,b\n" + "\n".join(lines).encode() + b"\n"
    assert len(body) > 2 * READ_BLOCK
    chunks = read(body, "csv", chunk_rows=25_000)
    assert not errors_of(chunks)
    table = pa.concat_tables(c.table for c in chunks)
    assert table.column("a").to_pylist() == [float(i) for i in range(120_000)]
    assert table.column("b").to_pylist()[:2] == ['quoted, with "escapes"\nand a break', '5" pipe']


def test_bom_counts_toward_max_bytes_and_offsets() -> None:
    body = b"\xef\xbb\xbfa,b\n1,2\n"
    assert len(rows_of(read(body, "csv", max_bytes=len(body)))) == 1
    assert read_error(body, "csv", max_bytes=len(body) - 1).code == "too_large"
    assert "offset 9" in read_error(b"\xef\xbb\xbfa,b\n1,\xff\n", "csv").message


def test_csv_quoted_line_breaks_across_blocks() -> None:
    body = b"a,b\n" + "".join(f'{i},"multi\nline ""{i}"""\n' for i in range(150_000)).encode()
    assert len(body) > 2 * READ_BLOCK
    chunks = read(body, "csv", chunk_rows=40_000)
    assert not errors_of(chunks)
    assert [r["b"] for r in rows_of(chunks)][-2:] == ['multi\nline "149998"', 'multi\nline "149999"']
    assert [r["row"] for r in rows_of(chunks)] == list(range(150_000))


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
@pytest.mark.parametrize("position", [0, 1, 7])
@pytest.mark.parametrize("value", [b"true", b"false"])
def test_a_boolean_is_a_row_error_wherever_it_stands(fmt: str, position: int, value: bytes) -> None:
    """One typing rule for every record: not only in a chunk's first record (pyarrow reads true as 1 after a number)."""
    records = [b'{"a":%d,"b":"x"}' % i for i in range(8)]
    records[position] = b'{"a":' + value + b',"b":"x"}'
    body = b"\n".join(records) if fmt == "ndjson" else b"[" + b",".join(records) + b"]"
    for chunk_rows in (3, 1000):
        chunks = read(body, fmt, chunk_rows=chunk_rows)
        assert [(e.row, e.column) for e in errors_of(chunks)] == [(position, "a")]
        assert "boolean" in errors_of(chunks)[0].message
        assert [r["row"] for r in rows_of(chunks)] == [i for i in range(8) if i != position]


def over_the_bound(fmt: str) -> bytes:
    """A body whose third record is 1.5 MiB, past the bound but small enough to arrive inside two reads."""
    big = b"x" * (MAX_RECORD_BYTES + MAX_RECORD_BYTES // 2)
    if fmt == "csv":
        return b"a,b\n1,2\n3," + big + b"\n4,5\n"
    records = [b'{"a":1,"b":"y"}', b'{"a":2,"b":"y"}', b'{"a":3,"b":"' + big + b'"}', b'{"a":4,"b":"y"}']
    return b"\n".join(records) + b"\n" if fmt == "ndjson" else b"[" + b",".join(records) + b"]"


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_record_just_past_the_bound_is_refused_whatever_its_place(fmt: str) -> None:
    for step in (None, 4096):
        with pytest.raises(ReadError) as info:
            list(iter_chunks(CountingStream(over_the_bound(fmt), step), fmt, columns=COLS, chunk_rows=1000))
        assert info.value.code == "line_too_long"
        assert fmt == "json" or info.value.line == 3  # CSV: the header is line 1


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_record_at_the_bound_is_read(fmt: str) -> None:
    pad = MAX_RECORD_BYTES - len(b'{"a":3,"b":""}')
    body = over_the_bound(fmt).replace(b"x" * (MAX_RECORD_BYTES + MAX_RECORD_BYTES // 2), b"x" * pad)
    assert len(rows_of(read(body, fmt))) == (3 if fmt == "csv" else 4)
