"""Readers and writers against their engines' own speed: prints seconds and ratios, asserts nothing.

Usage: .venv/bin/python bench/bench_io.py [ROWS [PART ...]]
ROWS synthetic rows of the 100-column schema (default 200,000); PART any of csv ndjson json write (default all).
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from model.readers import iter_chunks
from model.schema import REQUIRED_COLUMNS
from model.synth import write_synth
from model.writers import iter_encoded

COLUMNS = list(REQUIRED_COLUMNS)


def _seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _read_all(path: Path, fmt: str) -> int:
    with path.open("rb") as stream:
        return sum(c.rows for c in iter_chunks(stream, fmt, columns=COLUMNS, chunk_rows=25_000))


def _pyarrow_csv(path: Path, threads: bool = True) -> int:
    options = pacsv.ConvertOptions(include_columns=COLUMNS, column_types={c: pa.string() for c in COLUMNS})
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=threads), convert_options=options).num_rows


def _orjson_lines(path: Path) -> int:
    """orjson on every line, each record dropped at once (no GC pressure from holding them all)."""
    with path.open("rb") as lines:
        return sum(1 for line in lines if orjson.loads(line) is not None)


def _results(rows: int) -> pa.Table:
    """A result-shaped table: row, business_outcome, phat, 25 float features."""
    rng = np.random.default_rng(0)
    columns = {f"f{i:02d}": rng.standard_normal(rows) for i in range(25)}
    columns |= {"row": np.arange(rows), "business_outcome": rng.integers(0, 2, rows), "phat": rng.random(rows)}
    return pa.table(columns)


def main(rows: int, parts: set[str]) -> None:
    baselines: dict[str, list[tuple[str, Callable[[Path], object]]]] = {
        "csv": [
            ("pyarrow read_csv", _pyarrow_csv),
            ("pyarrow read_csv 1 thread", lambda p: _pyarrow_csv(p, threads=False)),
        ],
        "ndjson": [("orjson per line", _orjson_lines)],
        "json": [("orjson whole body", lambda p: len(orjson.loads(p.read_bytes())))],
    }
    with tempfile.TemporaryDirectory() as folder:
        for fmt in [f for f in ("csv", "ndjson", "json") if f in parts]:
            path = Path(folder) / f"synth.{fmt}"
            write_synth(path, rows, seed=1)
            size = path.stat().st_size / 1e6
            ours = _seconds(lambda path=path, fmt=fmt: _read_all(path, fmt))
            print(f"read {fmt:6} {rows} rows {size:7.1f} MB: readers {ours:6.2f}s")
            for name, baseline in baselines[fmt]:
                theirs = _seconds(lambda path=path, baseline=baseline: baseline(path))
                print(f"    {name:26} {theirs:6.2f}s  readers/baseline {ours / theirs:4.2f}")
            path.unlink()
    if "write" in parts:
        table = _results(rows)
        base = _seconds(lambda: pacsv.write_csv(table, io.BytesIO()))
        for fmt in ("csv", "ndjson", "json"):
            ours = _seconds(lambda fmt=fmt: sum(len(b) for b in iter_encoded([table], fmt)))
            print(
                f"write {fmt:6} {rows} rows x 28 columns: {ours:6.2f}s, pyarrow write_csv {base:6.2f}s, "
                f"ratio {ours / base:4.2f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000, set(sys.argv[2:]) or {"csv", "ndjson", "json", "write"})
