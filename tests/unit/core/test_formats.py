"""The format registry: media types and file extensions to format names, and back."""

from __future__ import annotations

import pytest

from core.formats import FORMATS, format_for_media_type, format_for_path


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/x-ndjson", "ndjson"),
        ("application/jsonl", "ndjson"),
        ("application/ndjson", "ndjson"),
        ("TEXT/CSV", "csv"),
        ("application/csv", "csv"),
        ("application/vnd.apache.parquet", "parquet"),
    ],
)
def test_format_for_media_type(content_type: str, fmt: str) -> None:
    assert format_for_media_type(content_type) == fmt


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "multipart/form-data"])
def test_unknown_media_type(content_type: str | None) -> None:
    assert format_for_media_type(content_type) is None


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("x.csv", "csv"), ("d/x.NDJSON", "ndjson"), ("x.jsonl", "ndjson"), ("x.json", "json"), ("x.parquet", "parquet"),
     ("x.txt", None), ("x", None)],
)
def test_format_for_path(path: str, fmt: str | None) -> None:
    assert format_for_path(path) == fmt


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_is_found_by_its_own_media_types_and_extensions(fmt: str) -> None:
    spec = FORMATS[fmt]
    assert {format_for_media_type(m) for m in spec.media_types} == {fmt}
    assert {format_for_path(f"x{e}") for e in spec.extensions} == {fmt}
    assert spec.content_type.startswith(spec.media_type)
