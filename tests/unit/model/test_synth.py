"""Synthetic data: deterministic by seed, same rows in every format, reference statistics, streamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from model.scoring import Scorer
from model.synth import format_money, format_percent, iter_synth, load_stats, write_synth


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".ndjson":
        return pd.read_json(path, lines=True)
    return pd.DataFrame(orjson.loads(path.read_bytes()))


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path: Path) -> None:
    write_synth(tmp_path / "a.csv", 500, 7, chunk_rows=200)
    write_synth(tmp_path / "b.csv", 500, 7, chunk_rows=200)
    write_synth(tmp_path / "c.csv", 500, 8, chunk_rows=200)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_formats_hold_the_same_rows(tmp_path: Path, scorer: Scorer) -> None:
    frames = {}
    for ext in ("csv", "ndjson", "json"):
        assert write_synth(tmp_path / f"s.{ext}", 300, 1, chunk_rows=128) == 300
        frames[ext] = _read(tmp_path / f"s.{ext}")
    assert list(frames["csv"].columns) == [f"x{i}" for i in range(100)] + ["y"]
    scores = {ext: scorer.score_frame(frame) for ext, frame in frames.items()}
    assert all(not s.errors for s in scores.values())
    np.testing.assert_allclose(scores["ndjson"].phat, scores["csv"].phat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores["json"].phat, scores["csv"].phat, rtol=0, atol=1e-12)
    assert frames["csv"]["y"].tolist() == frames["json"]["y"].tolist()


def test_reference_statistics_and_formats() -> None:
    table = pa.concat_tables(iter_synth(20_000, 3, chunk_rows=5000))
    frame = table.to_pandas()
    stats = load_stats()
    for column in ("x0", "x44", "x91", "x24"):
        spec = stats["numeric"][column]
        assert frame[column].mean() == pytest.approx(spec["mean"], abs=0.05 * spec["sd"])
        assert frame[column].std() == pytest.approx(spec["sd"], rel=0.05)
        assert frame[column].isna().mean() == pytest.approx(spec["missing_rate"], abs=0.005)
    x31 = frame["x31"].value_counts(normalize=True, dropna=False)
    assert x31["germany"] == pytest.approx(0.398, abs=0.02) and frame["x31"].isna().mean() > 0.005
    money = frame["x12"]
    assert money.str.match(r"^\(\$[0-9,]+\.[0-9]{2}\)$").any() and money.str.match(r"^\$-[0-9,]+\.[0-9]{2}$").any()
    assert money.str.endswith(" ").any() and frame["x63"].str.endswith("%").all()
    assert 0.45 < frame["y"].mean() < 0.55


def test_labels_follow_the_approved_model(scorer: Scorer) -> None:
    table = pa.concat_tables(iter_synth(20_000, 5))
    phat = scorer.score_frame(table).phat
    y = table.column("y").to_numpy()
    high, low = phat >= 0.8, phat < 0.2
    assert y[high].mean() == pytest.approx(phat[high].mean(), abs=0.03)
    assert y[low].mean() == pytest.approx(phat[low].mean(), abs=0.03)


def test_money_and_percent_text() -> None:
    values = np.array([6882.34, -5032.58, 1234567.891, -0.5, np.nan, 12.0, 999.999])
    accounting = pa.array([False, True, True, False, False, True, False])
    assert format_money(values, accounting).to_pylist() == [
        "$6,882.34", "($5,032.58)", "$1,234,567.89 ", "$-0.50", None, "$12.00 ", "$1,000.00"]
    assert format_percent(np.array([62.59, 6.25, np.nan])).to_pylist() == ["62.59%", "6.25%", None]


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_synth(tmp_path / "rows.parquet", 10, 0)
