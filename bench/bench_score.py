"""Benchmark: `predictq score` on synthetic CSV beside a bare pyarrow parse of the same file (not a test).

For each size, writes a synthetic CSV with the project's synth code, then runs three child processes and
reports wall seconds and peak RSS of each (os.wait4 gives one child's own rusage):
  parse   pyarrow.csv.read_csv of the whole file (every column)
  parse10 pyarrow.csv.read_csv of only the 10 columns the model reads
  score   predictq score FILE -o OUT.csv (streaming reader, scoring, writer)
Target: score / parse <= 1.5, and score's peak RSS flat as the file grows.
First it prints the in-process API costs: one record (score_records + to_records, median) and 10,000 records;
last, for the smallest size, where a `score` run's time goes: imports, reading, scoring, writing.

    .venv/bin/python bench/bench_score.py --sizes 200000 1000000 --dir /tmp/predictq-bench
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from model.readers import iter_chunks
from model.schema import REQUIRED_COLUMNS
from model.scoring import load_scorer
from model.synth import iter_synth, write_synth

PARSE = "import sys, pyarrow.csv as c; c.read_csv(sys.argv[1])"
PARSE_COLUMNS = (
    "import sys, pyarrow.csv as c; "
    "c.read_csv(sys.argv[1], convert_options=c.ConvertOptions(include_columns=sys.argv[2].split(',')))"
)


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed with status {status}")
    return seconds, usage.ru_maxrss / 1024


def bench(rows: int, folder: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Best-of-`repeat` timings of the three commands on one synthetic file."""
    data = folder / f"synth_{rows}.csv"
    if not data.exists():
        write_synth(data, rows, seed=rows)
    predictq = str(Path(sys.executable).with_name("predictq"))
    commands = {
        "parse": [sys.executable, "-c", PARSE, str(data)],
        "parse10": [sys.executable, "-c", PARSE_COLUMNS, str(data), ",".join(REQUIRED_COLUMNS)],
        "score": [predictq, "score", str(data), "-o", str(folder / f"scored_{rows}.csv")],
    }
    results = {}
    for name, argv in commands.items():
        runs = [run(argv) for _ in range(repeat)]
        results[name] = (min(s for s, _ in runs), max(m for _, m in runs))
    results["file_mib"] = (data.stat().st_size / 2**20, 0.0)
    return results


def inprocess() -> None:
    """Median cost of one record and throughput on 10,000 records, outputs built, in this process."""
    scorer = load_scorer()
    records = pa.concat_tables(iter_synth(10_000, seed=1)).drop_columns(["y"]).to_pylist()
    single = []
    for record in records[:3000]:
        start = time.perf_counter()
        scorer.score_records([record]).to_records()
        single.append(time.perf_counter() - start)
    batch = []
    for _ in range(5):
        start = time.perf_counter()
        scorer.score_records(records).to_records()
        batch.append(time.perf_counter() - start)
    single.sort()
    median, p99 = single[len(single) // 2] * 1e3, single[int(len(single) * 0.99)] * 1e3
    print(f"one record: median {median:.3f} ms, p99 {p99:.3f} ms;"
          f" 10,000 records: {len(records) / min(batch):,.0f} rows/s (best of 5)")


def stages(data: Path) -> None:
    """Split a `score` run's time: imports (fresh process), reading, scoring, writing (in this process)."""
    from model.writers import iter_encoded

    imports, _ = run([sys.executable, "-c", "import predictq.cli, model.scoring, model.readers, model.writers"])
    scorer = load_scorer()
    start = time.perf_counter()
    with data.open("rb") as source:
        tables = [c.table for c in iter_chunks(source, "csv", columns=list(REQUIRED_COLUMNS), chunk_rows=25_000)]
    read = time.perf_counter() - start
    start = time.perf_counter()
    results = [scorer.score_frame(table).to_arrow() for table in tables]
    scored = time.perf_counter() - start
    start = time.perf_counter()
    size = sum(len(block) for block in iter_encoded(results, "csv"))
    written = time.perf_counter() - start
    rows = sum(t.num_rows for t in tables)
    print(f"stages on {rows} rows: imports {imports:.2f} s, read {read:.2f} s, score {scored:.2f} s "
          f"({rows / scored:,.0f} rows/s), write {written:.2f} s ({size / 2**20:.0f} MiB CSV)")


def main() -> None:
    """Run the sizes and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/predictq-bench"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    inprocess()
    print(f"{'rows':>9} {'MiB':>6} {'parse s':>8} {'parse10 s':>9} {'score s':>8} {'score/parse':>11} "
          f"{'score/parse10':>13} {'parse RSS':>9} {'score RSS':>9}")
    for rows in args.sizes:
        r = bench(rows, args.dir, args.repeat)
        print(f"{rows:>9} {r['file_mib'][0]:>6.0f} {r['parse'][0]:>8.2f} {r['parse10'][0]:>9.2f} "
              f"{r['score'][0]:>8.2f} {r['score'][0] / r['parse'][0]:>11.2f} {r['score'][0] / r['parse10'][0]:>13.2f} "
              f"{r['parse'][1]:>8.0f}M {r['score'][1]:>8.0f}M", flush=True)
    stages(args.dir / f"synth_{min(args.sizes)}.csv")


if __name__ == "__main__":
    main()
