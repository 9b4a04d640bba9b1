"""Job ids carry their expiry; staged payloads round-trip and reject foreign bytes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs.keys import JobKeys, id_expiry, new_job_id
from jobs.staging import StagingError, decode_staged, decode_table, encode_staged, encode_table, staged_arrow
from model.errors import RowError


@pytest.mark.parametrize("expires_at", [0, 1, 35, 36, 1_764_150_000, 4_102_444_800])
def test_job_id_carries_its_expiry(expires_at: int) -> None:
    job_id = new_job_id(expires_at)
    assert id_expiry(job_id) == expires_at
    assert new_job_id(expires_at) != job_id


@pytest.mark.parametrize("text", ["", "abc", "zz-xyz", "1a-" + "0" * 19, "1A-" + "0" * 20, "../etc", "1a-" + "g" * 20])
def test_foreign_text_is_not_a_job_id(text: str) -> None:
    assert id_expiry(text) is None


def test_every_key_lives_under_the_job() -> None:
    keys = JobKeys("pq", "abc-123")
    names = keys.all_fixed()
    assert all(name.startswith("pq:job:abc-123") for name in names)
    assert len(set(names)) == len(names)


def test_staged_chunk_round_trips_with_its_parse_errors() -> None:
    table = pa.table({"row": pa.array([0, 2, 3], pa.int64()), "x5": ["a", None, "c"], "x12": [1.5, None, 2.0]})
    errors = [RowError(1, None, "not a JSON object"), RowError(4, "x5", "bad")]
    decoded, parse_errors = decode_staged(encode_staged(table, errors))
    assert decoded.equals(table)
    assert parse_errors.to_pylist() == [e.as_dict() for e in errors]


def test_a_parsed_chunk_is_staged_with_rows_numbered_from_its_first_record() -> None:
    table = pa.table({"x12": [1.5, 2.0], "row": pa.array([40, 42], pa.int64())})
    decoded, parse_errors = decode_staged(staged_arrow(table, [RowError(41, None, "not a JSON object")], 40))
    assert decoded["row"].to_pylist() == [0, 2] and decoded["x12"].to_pylist() == [1.5, 2.0]
    assert parse_errors["row"].to_pylist() == [1]


def test_staged_chunk_without_errors_has_an_empty_error_table() -> None:
    table = pa.table({"row": pa.array([5], pa.int64())})
    assert decode_staged(encode_staged(table, []))[1].num_rows == 0


@pytest.mark.parametrize("payload", [b"", b"PQS1", b"XXXX" + b"\0" * 20, b"PQS1" + b"\0\0\0\0\0\0\1\0" + b"abc"])
def test_foreign_payload_is_rejected(payload: bytes) -> None:
    with pytest.raises(StagingError):
        decode_staged(payload)


def test_tables_are_compressed() -> None:
    table = pa.table({"phat": pa.array([0.25] * 10_000)})
    payload = encode_table(table)
    assert len(payload) < 10_000 * 8 / 10
    assert decode_table(payload).equals(table)
