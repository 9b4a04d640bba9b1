"""Record ranges: a body cut without parsing its rows reads back, range by range, as the whole body reads."""

from __future__ import annotations

import io
import random

import pytest

from model.ranges import parse_range, split_records
from model.readers import MAX_RECORD_BYTES, READ_BLOCK, ReadError, iter_chunks

COLS = ["a", "b"]


def csv_body(rows: int, seed: int, line_end: bytes = b"\n") -> bytes:
    """A CSV whose quoted fields hold commas, escaped quotes and line breaks (a third of the records)."""
    rng = random.Random(seed)
    lines = [b'"a","b","c"']
    for i in range(rows):
        if rng.random() < 0.3:
            text = f'"x{i}{line_end.decode()},""q""{"y" * rng.randrange(50)}"'
        else:
            text = f"v{i}" * rng.randrange(1, 4)
        lines.append(f"{i},{text},{rng.random()}".encode())
    return line_end.join(lines) + line_end


def ndjson_body(rows: int) -> bytes:
    lines = [b'{"a": %d, "b": "x\\ny %d"}' % (i, i) if i % 9 else b"   " for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def whole(body: bytes, fmt: str) -> list[tuple]:
    chunks = iter_chunks(io.BytesIO(body), fmt, columns=COLS, chunk_rows=1 << 40)
    return [(r["row"], str(r["a"]), str(r["b"])) for c in chunks for r in c.table.to_pylist()]


def by_ranges(body: bytes, fmt: str, target: int) -> tuple[list[tuple], int]:
    split = split_records(io.BytesIO(body), fmt, target_bytes=target, columns=COLS)
    rows, offset, count = [], 0, 0
    for parts in split.ranges:
        data = b"".join(parts)
        chunk = parse_range(data, fmt, split.header, columns=COLS)
        rows += [(r["row"] + offset, str(r["a"]), str(r["b"])) for r in chunk.table.to_pylist()]
        offset += chunk.rows
        count += 1
    return rows, count


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize(("rows", "target"), [(300, 64), (3_000, 5_000), (60_000, 300_000), (60_000, READ_BLOCK * 2)])
def test_csv_ranges_read_as_the_whole_body(line_end: bytes, rows: int, target: int) -> None:
    body = csv_body(rows, seed=target, line_end=line_end)  # the large ones span several read blocks
    got, count = by_ranges(body, "csv", target)
    assert got == whole(body, "csv")
    assert count >= len(body) // target // 2


@pytest.mark.parametrize(("rows", "target"), [(300, 100), (120_000, 70_000), (120_000, READ_BLOCK * 2)])
def test_ndjson_ranges_read_as_the_whole_body(rows: int, target: int) -> None:
    body = ndjson_body(rows)
    rows, _ = by_ranges(body, "ndjson", target)
    assert rows == whole(body, "ndjson")


@pytest.mark.parametrize(
    ("body", "fmt", "code"),
    [
        (b"a,c\n1,2\n" * 300_000, "csv", "missing_columns"),
        (b"a,b\n", "csv", "empty"),
        (b"", "ndjson", "empty"),
        (b'{"a": 1}\n' * 300_000, "ndjson", "missing_columns"),
        (b"a,b\n\xff,1\n", "csv", "not_utf8"),
    ],
)
def test_a_bad_head_is_refused_before_any_range_is_read(body: bytes, fmt: str, code: str) -> None:
    stream = io.BytesIO(body)
    with pytest.raises(ReadError) as raised:
        split_records(stream, fmt, target_bytes=1000, columns=COLS)
    assert raised.value.code == code
    assert stream.tell() <= 2 * READ_BLOCK


def test_a_record_longer_than_the_limit_is_refused_while_cutting() -> None:
    body = b"a,b\n1,2\n" + b"3," + b"9" * (MAX_RECORD_BYTES + READ_BLOCK) + b"\n"
    split = split_records(io.BytesIO(body), "csv", target_bytes=1000, columns=COLS)
    with pytest.raises(ReadError) as raised:
        list(split.ranges)
    assert raised.value.code == "line_too_long"


def test_a_range_that_ends_inside_a_quoted_field_is_refused() -> None:
    with pytest.raises(ReadError) as raised:
        parse_range(b'1,"open\n', "csv", b"a,b", columns=COLS)
    assert raised.value.code == "malformed"


def test_a_range_of_blank_lines_holds_no_record() -> None:
    chunk = parse_range(b"\n\n", "ndjson", b"", columns=COLS)
    assert (chunk.rows, chunk.table.num_rows, chunk.table.column_names) == (0, 0, ["row", *COLS])
    assert parse_range(b"\r\n", "csv", b"a,b", columns=COLS).rows == 0


def test_a_later_ndjson_range_need_not_start_with_every_column() -> None:
    chunk = parse_range(b'{"a": 1}\n{"a": 2, "b": "x"}\n', "ndjson", b"", columns=COLS)
    assert chunk.table["b"].to_pylist() == [None, "x"]
