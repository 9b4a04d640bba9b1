"""The model's raw input schema: column names, the encoded-string columns, and the approved model's needs."""

from __future__ import annotations

RAW_COLUMNS: tuple[str, ...] = tuple(f"x{i}" for i in range(100))
CATEGORICAL_COLUMNS: tuple[str, ...] = ("x5", "x31", "x81", "x82")
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c not in CATEGORICAL_COLUMNS)
MONEY_COLUMNS: tuple[str, ...] = ("x12",)
PERCENT_COLUMNS: tuple[str, ...] = ("x63",)
TARGET_COLUMN = "y"
ROW_COLUMN = "row"

# The raw columns the approved model reads; every other raw column is accepted and ignored.
REQUIRED_COLUMNS: tuple[str, ...] = ("x5", "x12", "x31", "x44", "x53", "x56", "x58", "x62", "x81", "x91")


def numeric_kind(column: str) -> str:
    """How a numeric column's strings are written: 'money', 'percent' or plain 'number'."""
    if column in MONEY_COLUMNS:
        return "money"
    if column in PERCENT_COLUMNS:
        return "percent"
    return "number"


def dummy_name(column: str, level: str) -> str:
    """The one-hot feature name pandas.get_dummies gives a level (`x5_monday`)."""
    return f"{column}_{level}"
