"""The file formats predictq reads and writes: each one's name, file extensions and media types, defined once.

The API maps Content-Type and Accept to a format, the CLI and the client a file's extension; the model layer
knows formats only by name (its readers and writers are looked up by it) and never sees a media type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True, slots=True)
class Format:
    """One format: its name, its file extensions and media types (the first of each is the one predictq uses)."""

    name: str
    extensions: tuple[str, ...]
    media_types: tuple[str, ...]
    charset: bool = False  # whether an answer in this format names its charset (text formats browsers show)

    @property
    def media_type(self) -> str:
        """The media type predictq sends and answers with."""
        return self.media_types[0]

    @property
    def content_type(self) -> str:
        """The Content-Type of an answer in this format."""
        return f"{self.media_type}; charset=utf-8" if self.charset else self.media_type


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("csv", (".csv",), ("text/csv", "application/csv"), charset=True),
        Format(
            "ndjson",
            (".ndjson", ".jsonl"),
            ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
             "application/jsonlines"),
        ),
        Format("json", (".json",), ("application/json", "text/json")),
        Format("parquet", (".parquet",), ("application/vnd.apache.parquet",)),
    )
}
_BY_MEDIA_TYPE = {media: fmt.name for fmt in FORMATS.values() for media in fmt.media_types}
_BY_EXTENSION = {ext: fmt.name for fmt in FORMATS.values() for ext in fmt.extensions}


def format_for_media_type(content_type: str | None) -> str | None:
    """The format a Content-Type names (parameters such as charset ignored, any case), or None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _BY_MEDIA_TYPE.get(media)


def format_for_path(path: str | PurePath) -> str | None:
    """The format a file name's extension names (any case), or None."""
    return _BY_EXTENSION.get(PurePath(path).suffix.lower())


def media_types(names: tuple[str, ...] | None = None) -> list[str]:
    """Every media type of the named formats (all formats by default), sorted."""
    return sorted(media for name in (names or FORMATS) for media in FORMATS[name].media_types)


def extensions(names: tuple[str, ...] | None = None) -> list[str]:
    """Every file extension of the named formats (all formats by default), in registry order."""
    return [ext for name in (names or FORMATS) for ext in FORMATS[name].extensions]
