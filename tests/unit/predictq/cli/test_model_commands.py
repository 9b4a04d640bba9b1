"""`predictq synth` and `predictq score`: files in every format, row errors to a file, a model by path."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
from click.testing import CliRunner

from model.scoring import Scorer
from predictq.cli import cli


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".json":
        return pd.DataFrame(orjson.loads(path.read_bytes()))
    return pd.DataFrame([orjson.loads(line) for line in path.read_bytes().splitlines()])


@pytest.mark.parametrize(("source", "target"), [("csv", "ndjson"), ("ndjson", "json"), ("json", "csv")])
def test_synth_then_score_every_format(tmp_path: Path, scorer: Scorer, source: str, target: str) -> None:
    runner = CliRunner()
    rows = tmp_path / f"rows.{source}"
    assert runner.invoke(cli, ["synth", "--rows", "700", "--seed", "4", "-o", str(rows)]).exit_code == 0
    out = tmp_path / f"out.{target}"
    result = runner.invoke(cli, ["score", str(rows), "-o", str(out), "--chunk-rows", "256", "--passthrough", "y"])
    assert result.exit_code == 0, result.output
    assert "scored 700 rows" in result.output
    scored = _read(out)
    assert scored["row"].tolist() == list(range(700)) and set(scored["y"]) <= {0, 1}
    assert list(scored.columns) == sorted([*scorer.output_columns, "row", "y"])


def test_score_writes_row_errors(tmp_path: Path) -> None:
    rows = tmp_path / "rows.ndjson"
    good = {"x5": "monday", "x12": "$1.00", "x31": "asia", "x44": 0.1, "x53": 0.2, "x56": 0.3, "x58": 0.4,
            "x62": 0.5, "x81": "May", "x91": 0.6}
    records = [good, {**good, "x5": "funday"}, {**good, "x44": "n/a?"}, {**good, "x5": "?", "x12": "?"}, good]
    rows.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    errors = tmp_path / "errors.ndjson"
    result = CliRunner().invoke(cli, ["score", str(rows), "-o", str(tmp_path / "out.csv"), "--errors", str(errors)])
    assert result.exit_code == 0, result.output
    assert "scored 2 rows" in result.output and "3 rows failed (4 row errors)" in result.output
    reported = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [(e["row"], e["column"]) for e in reported] == [(1, "x5"), (2, "x44"), (3, "x5"), (3, "x12")]
    assert pd.read_csv(tmp_path / "out.csv")["row"].tolist() == [0, 4]


def test_score_refuses_a_bad_model_path(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x1\n1\n")
    result = CliRunner().invoke(cli, ["score", str(rows), "-o", str(tmp_path / "o.csv"), "--model",
                                      str(tmp_path / "nope.json")])
    assert result.exit_code != 0 and "cannot read model artifact" in result.output


def test_score_reports_missing_columns(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x5\n1,monday\n")
    result = CliRunner().invoke(cli, ["score", str(rows), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code != 0 and "x12" in result.output
