"""Typed errors shared by every layer; the API turns them into its one JSON error shape at the edge."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RowError:
    """One input row that could not be scored: its 0-based row index, the column at fault, and why."""

    row: int
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PredictqError(Exception):
    """Base class of every error predictq raises on purpose."""


class SchemaError(PredictqError):
    """Input as a whole does not fit the model's schema (for example, required columns are absent)."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []


class ArtifactError(PredictqError):
    """A model artifact is missing, malformed, or fails its integrity check."""
