"""Cleaning: every money, percent and number form that occurs, missing values, normalized levels, garbage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from model.cleaning import encode_levels, parse_numeric

MONEY = [
    ("$6,882.34", 6882.34),
    ("$-5,032.58", -5032.58),
    ("($5,032.58)", -5032.58),
    ("$6,882.34 ", 6882.34),
    (" $12.00", 12.0),
    ("-$7.50", -7.5),
    ("$1,234,567.89", 1234567.89),
    ("6882.34", 6882.34),
    ("6,882.34", 6882.34),
    (6882.34, 6882.34),
    (-12, -12.0),
]


@pytest.mark.parametrize(("raw", "expected"), MONEY)
def test_money_forms(raw: object, expected: float) -> None:
    values, bad = parse_numeric([raw], "money")
    assert not bad[0]
    assert values[0] == expected


@pytest.mark.parametrize(("raw", "expected"), [("62.59%", 62.59), (" 6.25% ", 6.25), ("62.59", 62.59), (62.59, 62.59),
                                               ("-1.5%", -1.5)])
def test_percent_forms(raw: object, expected: float) -> None:
    values, bad = parse_numeric([raw], "percent")
    assert not bad[0]
    assert values[0] == expected


@pytest.mark.parametrize(("raw", "expected"), [("-1.018506", -1.018506), (" 3 ", 3.0), ("1e3", 1000.0), (2, 2.0),
                                               (0.5, 0.5), ("+4.25", 4.25)])
def test_number_forms(raw: object, expected: float) -> None:
    values, bad = parse_numeric([raw], "number")
    assert not bad[0]
    assert values[0] == expected


@pytest.mark.parametrize("kind", ["number", "money", "percent"])
@pytest.mark.parametrize("raw", [None, float("nan"), "", "  ", "NaN", "nan", "null"])
def test_missing_forms(raw: object, kind: str) -> None:
    values, bad = parse_numeric([raw, 1.0], kind)
    assert not bad.any()
    assert math.isnan(values[0]) and values[1] == 1.0


@pytest.mark.parametrize("kind", ["number", "money", "percent"])
@pytest.mark.parametrize("raw", ["abc", "1.2.3", "$$", "12abc", [1.0], {"a": 1}, True, float("inf"), "-inf", "--5",
                                 10**400])
def test_garbage_is_flagged_alone(raw: object, kind: str) -> None:
    values, bad = parse_numeric([1.0, raw, "2"], kind)
    assert bad.tolist() == [False, True, False]
    assert values[0] == 1.0 and values[2] == 2.0


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["1.5", None, "x"]),
        pd.Series(["1.5", None, "x"], dtype="str"),
        pd.Series(["1.5", np.nan, "x"], dtype=object),
        np.array([1.5, None, "x"], dtype=object),
        ["1.5", None, "x"],
    ],
    ids=["arrow", "pandas-str", "pandas-object", "numpy-object", "list"],
)
def test_every_container(column: object) -> None:
    values, bad = parse_numeric(column)
    assert values[0] == 1.5 and math.isnan(values[1])
    assert bad.tolist() == [False, False, True]


def test_mixed_numbers_and_strings_in_one_column() -> None:
    values, bad = parse_numeric([1, "2.5", None, "$3", 4.0], "money")
    assert values[[0, 1, 3, 4]].tolist() == [1.0, 2.5, 3.0, 4.0]
    assert math.isnan(values[2]) and not bad.any()


@pytest.mark.parametrize("raw", ["6882,34", "5)", "$5$", "(5", "$1,23.45", "(-$5)", "$-(5)", "12%"])
def test_malformed_money_is_flagged(raw: str) -> None:
    _, bad = parse_numeric([raw], "money")
    assert bad[0]


@pytest.mark.parametrize("raw", ["6%2", "%5", "5%%"])
def test_malformed_percent_is_flagged(raw: str) -> None:
    _, bad = parse_numeric([raw], "percent")
    assert bad[0]


def test_unicode_blanks_and_spelled_missing_take_the_slow_path() -> None:
    values, bad = parse_numeric(["\u00a0$5.00\u00a0", "N/A", "null", "7"], "money")
    assert values[0] == 5.0 and math.isnan(values[1]) and math.isnan(values[2]) and values[3] == 7.0
    assert not bad.any()


LEVELS = ("friday", "monday", "saturday")


@pytest.mark.parametrize(("raw", "code"), [("monday", 1), ("Monday", 1), (" SATURDAY ", 2), ("friday", 0),
                                           ("\tfriday", 0)])
def test_levels_normalize_case_and_blanks(raw: str, code: int) -> None:
    codes, bad = encode_levels([raw], LEVELS)
    assert not bad[0] and codes[0] == code


@pytest.mark.parametrize("raw", [None, "", " ", float("nan")])
def test_level_missing(raw: object) -> None:
    codes, bad = encode_levels([raw, "monday"], LEVELS)
    assert not bad.any() and math.isnan(codes[0]) and codes[1] == 1


@pytest.mark.parametrize("raw", ["funday", "mon", 3, 1.5, ["monday"], True])
def test_level_garbage_is_flagged_alone(raw: object) -> None:
    codes, bad = encode_levels(["monday", raw, "friday"], LEVELS)
    assert bad.tolist() == [False, True, False]
    assert codes[0] == 1 and codes[2] == 0
