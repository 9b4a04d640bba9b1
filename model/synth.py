"""Synthetic rows of the model's input schema, labelled by the approved GLM, generated and written in chunks.

Numeric columns are independent draws (normal, or uniform where the real column is flat) with the reference
means and variances and missing rates; categoricals follow the real level frequencies; x12 is written as
money in both the plain ('$-5,032.58') and the accounting ('($5,032.58)', '$6,882.34 ') styles, x63 as a
percent. y ~ Bernoulli(phat) of the approved model applied to the values as written, so a model trained on
this data should recover the approved coefficients. Same rows, seed and chunk size give the same file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from model.readers import ReadError, format_from_path
from model.schema import CATEGORICAL_COLUMNS, MONEY_COLUMNS, PERCENT_COLUMNS, RAW_COLUMNS, TARGET_COLUMN
from model.scoring import Scorer, load_scorer
from model.writers import write_file

STATS_PATH = Path(__file__).resolve().parent / "data" / "synth_stats.json"
CHUNK_ROWS = 50_000
_DECIMALS = 6  # plain numbers are written to 6 decimals, as the real file mostly is


def load_stats(path: Path = STATS_PATH) -> dict[str, Any]:
    """The aggregate statistics that drive generation."""
    return orjson.loads(path.read_bytes())


def _numbers(rng: np.random.Generator, spec: Mapping[str, Any], n: int) -> np.ndarray:
    """Draws with the column's mean and standard deviation, NaN at its missing rate."""
    mean, sd = spec["mean"], spec["sd"]
    if spec["distribution"] == "uniform":
        half = np.sqrt(3.0) * sd
        values = rng.uniform(mean - half, mean + half, n)
    else:
        values = rng.normal(mean, sd, n)
    values[rng.random(n) < spec["missing_rate"]] = np.nan
    return values


def _levels(rng: np.random.Generator, spec: Mapping[str, Any], n: int) -> pa.Array:
    """Levels drawn at the real frequencies, null at the missing rate."""
    levels = pa.array(spec["levels"], pa.string())
    p = np.asarray(spec["frequency"], dtype=np.float64)
    codes = rng.choice(len(levels), size=n, p=p / p.sum())
    missing = rng.random(n) < spec["missing_rate"]
    return pc.take(levels, pa.array(codes, mask=missing))


def _pad(values: np.ndarray, width: int) -> pa.Array:
    """Non-negative integers as zero-padded strings."""
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def format_money(values: np.ndarray, accounting: np.ndarray) -> pa.Array:
    """Amounts as '$6,882.34' / '$-5,032.58', or where `accounting` as '$6,882.34 ' / '($5,032.58)'."""
    cents = np.round(np.abs(np.nan_to_num(values)) * 100).astype(np.int64)
    dollars, frac = cents // 100, cents % 100
    millions, thousands, units = dollars // 1_000_000, (dollars // 1000) % 1000, dollars % 1000
    join = pc.binary_join_element_wise
    text = pc.if_else(
        pa.array(millions > 0),
        join(pc.cast(pa.array(millions), pa.string()), _pad(thousands, 3), _pad(units, 3), ","),
        pc.if_else(pa.array(thousands > 0), join(pc.cast(pa.array(thousands), pa.string()), _pad(units, 3), ","),
                   pc.cast(pa.array(units), pa.string())),
    )
    amount = join(text, _pad(frac, 2), ".")
    negative = pa.array(values < 0)
    plain = pc.if_else(negative, join("$-", amount, ""), join("$", amount, ""))
    excel = pc.if_else(negative, join("($", amount, ")", ""), join("$", amount, " ", ""))
    return pc.if_else(pa.array(np.isnan(values)), pa.scalar(None, pa.string()), pc.if_else(accounting, excel, plain))


def format_percent(values: np.ndarray) -> pa.Array:
    """Percents as '62.59%' (62.59, not 0.6259)."""
    return pc.binary_join_element_wise(pc.cast(pa.array(values, from_pandas=True), pa.string()), "%", "")


def synth_table(rng: np.random.Generator, n: int, stats: Mapping[str, Any], scorer: Scorer) -> pa.Table:
    """One chunk: x0..x99 as they would arrive, then y drawn from the approved model's phat."""
    values: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        if name in CATEGORICAL_COLUMNS:
            values[name] = _levels(rng, stats["categorical"][name], n)
        else:
            decimals = 2 if name in MONEY_COLUMNS or name in PERCENT_COLUMNS else _DECIMALS
            values[name] = np.round(_numbers(rng, stats["numeric"][name], n), decimals)
    accounting = pa.array(rng.random(n) < 0.5)
    phat = scorer.score_frame(values).phat  # every generated value is valid, so rows align
    y = (rng.random(n) < phat).astype(np.int64)
    columns = {}
    for name, column in values.items():
        if name in MONEY_COLUMNS:
            columns[name] = format_money(column, accounting)
        elif name in PERCENT_COLUMNS:
            columns[name] = format_percent(column)
        else:
            columns[name] = column if isinstance(column, pa.Array) else pa.array(column, from_pandas=True)
    columns[TARGET_COLUMN] = pa.array(y)
    return pa.table(columns)


def iter_synth(rows: int, seed: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Tables of at most `chunk_rows` synthetic rows, `rows` in all, deterministic by seed."""
    rng = np.random.default_rng(seed)
    stats, scorer = load_stats(), load_scorer()
    for start in range(0, rows, chunk_rows):
        yield synth_table(rng, min(chunk_rows, rows - start), stats, scorer)


def write_synth(path: str | Path, rows: int, seed: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write synthetic rows to .csv, .ndjson/.jsonl or .json by extension, streaming; returns rows written."""
    try:
        fmt = format_from_path(path)  # the formats the streaming readers (and so `predictq score`) read
    except ReadError as exc:
        raise ValueError(exc.message) from None
    written = [0]

    def counted() -> Iterator[pa.Table]:
        for table in iter_synth(rows, seed, chunk_rows):
            written[0] += table.num_rows
            yield table

    # plain: the columns in schema order and the money and percent text as written ('-3.5%' is data, not a formula)
    write_file(counted(), path, fmt, plain=True)
    return written[0]
