"""Every benchmark in one run: each path beside its limit, one table of figures and ratios.

Generates its data with `predictq synth`, measures the in-process limit, then starts `predictq up` (API under
gunicorn with 2 workers, a private Redis, Celery workers) on a free loopback port and measures jobs, /predict,
memory and scale-out against it. Every ratio is taken between two runs made in this one session. Prints the
table and writes it, with the machine it ran on, to --out (bench/results.md). Asserts nothing.

    .venv/bin/python bench/run_all.py            # full: 1,000,000 rows, a 1 GB upload (1-2 minutes on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # 100,000 rows, a 100 MB upload (under a minute)
    .venv/bin/python bench/run_all.py --only 7 --huge-rows 10000000   # one 10M-row (9.4 GB) job, memory sampled
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psutil
import pyarrow as pa
import redis
from bench_score import PARSE, run
from loadtest import RunningStack, local_stack, require_loopback

from predictq.client import Client

# Rate limits out of the way; everything else at the service's defaults.
STACK_ENV = {
    "PREDICTQ_RATE_LIMIT_SUBMIT": "100000/minute",
    "PREDICTQ_RATE_LIMIT_POLL": "1000000/minute",
    "PREDICTQ_RATE_LIMIT_PREDICT": "1000000/minute",
}
SAMPLE_SECONDS = 0.05  # RSS sampling period


def stack_env(folder: Path) -> dict[str, str]:
    """STACK_ENV with a blob store of the stack's own under `folder` (deleted with it)."""
    return STACK_ENV | {"PREDICTQ_STORE_URI": str(folder / "store")}
PREDICT_BATCH = 10_000


@dataclass
class Row:
    """One line of the table: a figure, what it is compared with, and the target it answers."""

    section: str
    name: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    holds: str = ""


@dataclass
class Table:
    """The rows measured so far, printed as they come."""

    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        """Keep a row and show it at once (a long run shows progress)."""
        self.rows.append(row)
        print(f"  {row.section} {row.name}: {row.value} | {row.baseline} | {row.ratio} | {row.target} {row.holds}",
              flush=True)

    def markdown(self) -> str:
        """The table in Markdown."""
        lines = ["| # | measurement | figure | beside | ratio | target | holds |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.section} | {r.name} | {r.value} | {r.baseline} | {r.ratio} | {r.target} | {r.holds} |"
                  for r in self.rows]
        return "\n".join(lines) + "\n"


def verdict(ok: bool) -> str:
    """The holds column."""
    return "yes" if ok else "**no**"


def synth(rows: int, path: Path) -> Path:
    """`predictq synth` output (cached by size and format in the bench folder)."""
    if not path.exists():
        predictq = str(Path(sys.executable).with_name("predictq"))
        subprocess.run([predictq, "synth", "--rows", str(rows), "--seed", "1", "-o", str(path)], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def best_of(repeat: int, argv: list[str]) -> tuple[float, float]:
    """Fastest wall seconds and highest peak RSS (MiB) of `repeat` runs of one command."""
    runs = [run(argv) for _ in range(repeat)]
    return min(s for s, _ in runs), max(m for _, m in runs)


def in_process_limit(table: Table, data: Path, rows: int, folder: Path, repeat: int) -> float:
    """(1) `predictq score` beside a bare pyarrow parse of the same file; returns score seconds."""
    predictq = str(Path(sys.executable).with_name("predictq"))
    parse, _ = best_of(repeat, [sys.executable, "-c", PARSE, str(data)])
    score, score_rss = best_of(repeat, [predictq, "score", str(data), "-o", str(folder / "scored.csv")])
    ratio = score / parse
    table.add(Row("1", f"`predictq score` {rows:,} CSV rows", f"{score:.2f} s ({rows / score:,.0f} rows/s)",
                  f"pyarrow read_csv {parse:.2f} s", f"{ratio:.2f}", "<= 1.5", verdict(ratio <= 1.5)))
    table.add(Row("1", "`predictq score` peak RSS", f"{score_rss:.0f} MiB"))
    return score


@contextmanager
def on_thread(loop: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    """Run a sampling `loop` on a daemon thread while the block runs; then set `stop` and wait for the loop."""
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def bench_stack(workers: int, **env: str) -> Iterator[RunningStack]:
    """A local stack with `workers` worker processes, its logs and blob store in a temporary folder (deleted
    after), `env` added to STACK_ENV."""
    with (tempfile.TemporaryDirectory(prefix="predictq-bench-") as logs,
          local_stack(workers, Path(logs), stack_env(Path(logs)) | env) as stack):
        yield stack


@dataclass
class Sampler:
    """Peak RSS and CPU seconds used per process of a changing set of processes, sampled on a thread."""

    pids: Callable[[], list[int]]
    peaks: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (first, last) CPU seconds seen
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            for pid in self.pids():
                try:
                    proc = psutil.Process(pid)
                    with proc.oneshot():
                        rss, times = proc.memory_info().rss, proc.cpu_times()
                except psutil.Error:
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), rss)
                used = times.user + times.system
                self.cpu[pid] = (self.cpu.get(pid, (used, used))[0], used)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        """Sample while the block runs."""
        with on_thread(self._loop, self._stop):
            yield self

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds used by every sampled process between its first and last sample."""
        return sum(last - first for first, last in self.cpu.values())

    @property
    def peak_mib(self) -> float:
        """The highest RSS any one process reached."""
        return max(self.peaks.values(), default=0) / 2**20

    @property
    def busiest_peak_mib(self) -> float:
        """The peak RSS of the process that used the most CPU meanwhile (the API worker that took a request)."""
        if not self.cpu:
            return 0.0
        busiest = max(self.cpu, key=lambda pid: self.cpu[pid][1] - self.cpu[pid][0])
        return self.peaks[busiest] / 2**20


@dataclass
class RedisMemory:
    """Redis `used_memory` sampled on a thread: the value before, the peak meanwhile, the value after."""

    url: str
    before: int = 0
    peak: int = 0
    after: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _used(self, client: redis.Redis) -> int:
        return int(client.info("memory")["used_memory"])

    @contextmanager
    def running(self) -> Iterator[RedisMemory]:
        """Sample while the block runs."""
        client = redis.Redis.from_url(self.url)
        self.before = self.peak = self._used(client)

        def loop() -> None:
            while not self._stop.wait(SAMPLE_SECONDS):
                self.peak = max(self.peak, self._used(client))

        try:
            with on_thread(loop, self._stop):
                yield self
        finally:
            self.after = self._used(client)
            self.peak = max(self.peak, self.after)


def processes(stack: RunningStack, word: str) -> list[int]:
    """Pids under the stack whose command line names `word` and whose parent does too (forked workers)."""
    found = []
    for proc in psutil.Process(stack.pid).children(recursive=True):
        try:
            if word in " ".join(proc.cmdline()) and word in " ".join(proc.parent().cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


@dataclass(frozen=True)
class JobRun:
    """One job measured from the client: upload, scoring after the upload, download."""

    job: dict[str, Any]
    upload: float
    wait: float
    download: float

    @property
    def total(self) -> float:
        return self.upload + self.wait + self.download


def run_job(client: Client, data: Path, out: Path, upload: Sampler | None = None,
            download: Sampler | None = None) -> JobRun:
    """Upload `data`, poll until done, download CSV results (sampling RSS in those phases when given);
    fails loudly if any row was not scored."""
    start = time.perf_counter()
    with upload.running() if upload else nullcontext():
        job = client.submit(data)
    uploaded = time.perf_counter()
    final = client.wait(job.id, interval=0.05, timeout=1800)
    done = time.perf_counter()
    with out.open("wb") as sink, download.running() if download else nullcontext():
        client.download(job.id, sink, "csv")
    end = time.perf_counter()
    if final["state"] != "succeeded" or final["rows_failed"]:
        raise SystemExit(f"bench: job did not score every row: {final}")
    return JobRun(final, uploaded - start, done - uploaded, end - done)


def job_row(table: Table, rows: int, run_: JobRun, score: float | None) -> None:
    """(2) One job's line, beside `predictq score` of the same file when given."""
    split = f"upload {run_.upload:.2f} + score {run_.wait:.2f} + download {run_.download:.2f}"
    value = f"{run_.total:.2f} s ({rows / run_.total:,.0f} rows/s): {split}"
    if score is None:
        table.add(Row("2", f"job {rows:,} rows, CSV in and out, 2 worker processes", value))
        return
    ratio = run_.total / score
    table.add(Row("2", f"job {rows:,} rows, CSV in and out, 2 worker processes", value, f"(1) {score:.2f} s",
                  f"{ratio:.2f}", "<= 0.8", verdict(ratio <= 0.8)))


def post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> float:
    """Seconds for one POST on a kept-alive connection, answer read in full; fails on any non-200."""
    start = time.perf_counter()
    conn.request("POST", path, body, headers)
    response = conn.getresponse()
    answer = response.read()
    seconds = time.perf_counter() - start
    if response.status != 200:
        raise SystemExit(f"bench: POST {path} answered {response.status}: {answer[:300]!r}")
    return seconds


def latencies(stack: RunningStack, body: bytes, clients: int, requests: int) -> list[float]:
    """Per-request seconds of `requests` one-row POSTs from each of `clients` threads (own connection each)."""
    parts = urlsplit(stack.url)
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    seconds: list[float] = []
    lock = threading.Lock()

    def client_loop() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = [post(conn, "/predict", body, headers) for _ in range(requests)]
        conn.close()
        with lock:
            seconds.extend(mine)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)] * 1e3


def predict_rows(table: Table, stack: RunningStack, body: bytes, one_row: bytes, requests: int) -> None:
    """(3) /predict: one-row latency at concurrency 1 and 8, a 10,000-row body beside orjson parsing it."""
    latencies(stack, one_row, 1, 50)  # warm both gunicorn workers' model and connections
    for clients in (1, 8):
        seconds = latencies(stack, one_row, clients, requests if clients == 1 else max(requests // 4, 50))
        p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
        target = "p50 <= 2 ms, p99 <= 10 ms" if clients == 1 else ""
        holds = verdict(p50 <= 2 and p99 <= 10) if clients == 1 else ""
        table.add(Row("3", f"POST /predict one row, concurrency {clients}", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                      f"{len(seconds)} requests", "", target, holds))
    parts = urlsplit(stack.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    request = statistics.median(post(conn, "/predict", body, headers) for _ in range(9))
    conn.close()
    parse = statistics.median(timed(lambda: orjson.loads(body)) for _ in range(9))
    rate, ratio = PREDICT_BATCH / request, request / parse
    table.add(Row("3", f"POST /predict {PREDICT_BATCH:,} rows ({len(body) / 1e6:.1f} MB)",
                  f"{request * 1e3:.0f} ms ({rate:,.0f} rows/s)", f"orjson.loads {parse * 1e3:.0f} ms",
                  f"{ratio:.2f}", ">= 30,000 rows/s, ratio <= 1.5", verdict(rate >= 30_000 and ratio <= 1.5)))


def timed(work: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def machine() -> str:
    """CPU model, cores, memory and the versions that matter, in one line."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = psutil.virtual_memory().total / 2**30
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}")


@dataclass(frozen=True)
class Sizes:
    """What one run measures."""

    rows: int
    small_rows: int
    upload_bytes: int
    repeat: int


@dataclass(frozen=True)
class MeasuredJob:
    """A job run with the peak RSS of the API worker that took the upload and of the one that sent the results,
    and of the worker processes over the whole job; the CPU seconds of each phase; Redis memory."""

    run: JobRun
    api_mib: float
    api_download_mib: float
    worker_mib: float
    api_upload_cpu: float
    api_download_cpu: float
    worker_cpu: float
    redis: RedisMemory

    def redis_peak_per_row(self, rows: int) -> float:
        return (self.redis.peak - self.redis.before) / rows

    def redis_kept_per_row(self, rows: int) -> float:
        return max(self.redis.after - self.redis.before, 0) / rows


def measure_job(client: Client, stack: RunningStack, data: Path, folder: Path) -> MeasuredJob:
    """One job with RSS and CPU sampled for the gunicorn and Celery processes, and Redis memory."""
    upload, download = Sampler(lambda: processes(stack, "gunicorn")), Sampler(lambda: processes(stack, "gunicorn"))
    workers = Sampler(lambda: processes(stack, "celery"))
    memory = RedisMemory(stack.redis_url)
    with memory.running(), workers.running():
        run_ = run_job(client, data, folder / "job_scored.csv", upload, download)
    return MeasuredJob(run_, upload.busiest_peak_mib, download.busiest_peak_mib, workers.peak_mib,
                       upload.cpu_seconds, download.cpu_seconds, workers.cpu_seconds, memory)


def stack_rows(table: Table, sizes: Sizes, folder: Path, score: float | None, sections: str) -> MeasuredJob | None:
    """(2), (3), (4) against one stack with 2 workers; returns the big job's run for (5)."""
    big, small = folder / f"synth_{sizes.rows}.csv", folder / f"synth_{sizes.small_rows}.csv"
    one_row = orjson.dumps(orjson.loads(synth(1, folder / "synth_1.json").read_bytes())[0])
    body = synth(PREDICT_BATCH, folder / f"synth_{PREDICT_BATCH}.json").read_bytes()
    row_bytes = big.stat().st_size / sizes.rows
    upload_rows = max(sizes.rows, math.ceil(sizes.upload_bytes / row_bytes))
    upload = synth(upload_rows, folder / f"synth_{upload_rows}.csv") if "4" in sections else big
    with bench_stack(2) as stack:
        require_loopback(stack.url)
        client = Client(stack.url, stack.key, timeout=600)
        big_run = small_run = None
        if "2" in sections or "4" in sections or "5" in sections:
            small_run = measure_job(client, stack, small, folder)
            job_row(table, sizes.small_rows, small_run.run, None)
            big_run = measure_job(client, stack, big, folder)
            job_row(table, sizes.rows, big_run.run, score)
            growth = (big_run.run.total / sizes.rows) / (small_run.run.total / sizes.small_rows)
            table.add(Row("2", f"cost per row, {sizes.rows:,} vs {sizes.small_rows:,} rows", f"{growth:.2f}x"))
        if "3" in sections:
            predict_rows(table, stack, body, one_row, 1000 if sizes.rows >= 1_000_000 else 400)
        if "4" in sections and big_run is not None and small_run is not None:
            memory_rows(table, stack, (small_run, big_run), upload, sizes, folder)
    return big_run


def memory_rows(
    table: Table, stack: RunningStack, runs: tuple[MeasuredJob, MeasuredJob], upload: Path, sizes: Sizes, folder: Path
) -> None:
    """(4) API RSS over a big upload, worker RSS by job size, Redis bytes per row at the peak and after."""
    small_run, big_run = runs
    client = Client(stack.url, stack.key, timeout=600)
    same_file = upload == folder / f"synth_{sizes.rows}.csv"
    upload_run = big_run if same_file else measure_job(client, stack, upload, folder)
    size = upload.stat().st_size
    table.add(Row("4", f"API peak RSS, {size / 1e9:.2f} GB upload", f"{upload_run.api_mib:.0f} MiB", "", "",
                  "<= 300 MB", verdict(upload_run.api_mib * 2**20 <= 300e6)))
    table.add(Row("4", f"API peak RSS, its {upload_run.run.job['rows_total']:,} results downloaded as CSV",
                  f"{upload_run.api_download_mib:.0f} MiB"))
    flat = big_run.worker_mib / small_run.worker_mib
    table.add(Row("4", "worker peak RSS (per process)", f"{big_run.worker_mib:.0f} MiB at {sizes.rows:,} rows",
                  f"{small_run.worker_mib:.0f} MiB at {sizes.small_rows:,} rows", f"{flat:.2f}", "flat",
                  verdict(flat <= 1.1)))
    peak = big_run.redis_peak_per_row(sizes.rows)
    redis_memory = big_run.redis
    table.add(Row("4", "Redis peak bytes per row during the job (used_memory above the idle stack)",
                  f"{peak:.3f} B ({(redis_memory.peak - redis_memory.before) / 1024:.0f} KiB above "
                  f"{redis_memory.before / 2**20:.1f} MiB)", "", "", "<= 8 B", verdict(peak <= 8)))
    table.add(Row("4", "Redis bytes per row kept after the job", f"{big_run.redis_kept_per_row(sizes.rows):.2f} B"))
    data_path_rows(table, upload_run, size, big_run, sizes.rows)


def data_path_rows(table: Table, upload_run: MeasuredJob, size: int, big_run: MeasuredJob, rows: int) -> None:
    """(6) CPU spent per GB by the API and per million rows by the workers."""
    per_gb = upload_run.api_upload_cpu / (size / 1e9)
    table.add(Row("6", "API CPU per GB uploaded (all gunicorn processes, CSV)", f"{per_gb:.2f} s", "", "",
                  "<= 0.5 s", verdict(per_gb <= 0.5)))
    sent = upload_run.run.job["rows_total"]
    table.add(Row("6", "API CPU per million result rows sent as CSV",
                  f"{upload_run.api_download_cpu / sent * 1e6:.2f} s"))
    table.add(Row("6", "worker CPU per million rows (parse + score + write, all pool processes)",
                  f"{big_run.worker_cpu / rows * 1e6:.2f} s"))


def scale_out(table: Table, sizes: Sizes, folder: Path, two: MeasuredJob) -> None:
    """(5) The big job with 1 worker process beside the 2-process run, CPU per million rows, the projection."""
    data = folder / f"synth_{sizes.rows}.csv"
    with bench_stack(1) as stack:
        one = measure_job(Client(stack.url, stack.key, timeout=600), stack, data, folder)
    runs = {1: one, 2: two}
    for workers, measured in runs.items():
        r = measured.run
        worker_cpu = measured.worker_cpu / sizes.rows * 1e6
        api_cpu = (measured.api_upload_cpu + measured.api_download_cpu) / sizes.rows * 1e6
        table.add(Row("5", f"job {sizes.rows:,} rows, {workers} worker process{'es' if workers > 1 else ''}",
                      f"{sizes.rows / r.total:,.0f} rows/s end to end ({r.total:.2f} s); CPU per million rows: "
                      f"workers {worker_cpu:.2f} s, API {api_cpu:.2f} s", "1 worker",
                      f"{one.run.total / r.total:.2f}x"))
    per_core = 1e6 / (two.worker_cpu / sizes.rows * 1e6)
    api_per_core = 1e6 / ((two.api_upload_cpu + two.api_download_cpu) / sizes.rows * 1e6)
    table.add(Row("5", "projection: N worker hosts of C cores, one API core per upload",
                  f"scoring about N x C x {per_core:,.0f} rows/s, until one API core's {api_per_core:,.0f} rows/s "
                  "(upload and download of one job) or the store's bandwidth is the limit"))


def huge_job(table: Table, rows: int, folder: Path) -> None:
    """(7) One very large job on the 2-worker stack: it succeeds, with API, worker and Redis memory sampled."""
    data = synth(rows, folder / f"synth_{rows}.csv")
    with bench_stack(2, PREDICTQ_MAX_UPLOAD_BYTES=str(2 * data.stat().st_size)) as stack:
        measured = measure_job(Client(stack.url, stack.key, timeout=3600), stack, data, folder)
    r = measured.run
    table.add(Row("7", f"job {rows:,} rows ({data.stat().st_size / 1e9:.1f} GB CSV), 2 worker processes",
                  f"{r.job['state']} in {r.total:.0f} s ({rows / r.total:,.0f} rows/s): upload {r.upload:.0f} + "
                  f"score {r.wait:.0f} + download {r.download:.0f}", "", "", "succeeds",
                  verdict(r.job["state"] == "succeeded" and r.job["rows_done"] == rows)))
    table.add(Row("7", "peak RSS at this size: API upload / API download / worker process",
                  f"{measured.api_mib:.0f} / {measured.api_download_mib:.0f} / {measured.worker_mib:.0f} MiB", "",
                  "", "flat (as at 1M rows)"))
    table.add(Row("7", "Redis peak bytes per row at this size", f"{measured.redis_peak_per_row(rows):.3f} B", "", "",
                  "<= 8 B", verdict(measured.redis_peak_per_row(rows) <= 8)))


def write_results(path: Path, table: Table, command: str, seconds: float, load: str) -> None:
    """bench/results.md: the command, the machine and its load, the table."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(
        "# Benchmark results\n\n"
        f"Made by `{command}` on {stamp} in {seconds / 60:.1f} minutes.\n\n"
        f"Machine: {machine()}; 1-minute load average {load}.\n\n" + table.markdown()
    )


def load_average() -> str:
    """The 1-minute load average now (other work on the machine shows up here)."""
    return f"{os.getloadavg()[0]:.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 10,000 small, 100 MB upload.")
    parser.add_argument("--rows", type=int, default=None, help="Rows of the big file (default 1,000,000).")
    parser.add_argument("--small-rows", type=int, default=None, help="Rows of the small job (default 100,000).")
    parser.add_argument("--upload-gb", type=float, default=None, help="Size of the memory upload (default 1).")
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each (1) command; the best counts.")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/predictq-bench"), help="Data files (kept).")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    parser.add_argument("--only", default="123456", help="Sections to run, e.g. 3 or 24 (default: 123456; 7 is the "
                        "very large job, run only when named).")
    parser.add_argument("--huge-rows", type=int, default=10_000_000, help="Rows of the section 7 job.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = Sizes(
        rows=args.rows or (100_000 if args.quick else 1_000_000),
        small_rows=args.small_rows or (10_000 if args.quick else 100_000),
        upload_bytes=int((args.upload_gb or (0.1 if args.quick else 1.0)) * 1e9),
        repeat=args.repeat,
    )
    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = load_average()
    table = Table()
    print(f"bench: {machine()}", flush=True)
    big = synth(sizes.rows, args.dir / f"synth_{sizes.rows}.csv")
    synth(sizes.small_rows, args.dir / f"synth_{sizes.small_rows}.csv")
    score = in_process_limit(table, big, sizes.rows, args.dir, sizes.repeat) if "1" in args.only else None
    two = stack_rows(table, sizes, args.dir, score, args.only)
    if "5" in args.only and two is not None:
        scale_out(table, sizes, args.dir, two)
    if "7" in args.only:
        huge_job(table, args.huge_rows, args.dir)
    seconds = time.perf_counter() - started
    command = "python bench/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(args.out, table, command.strip(), seconds, f"{load_before} at the start, {load_average()} at the end")
    print(table.markdown(), end="")
    print(f"bench: written to {args.out} in {seconds / 60:.1f} minutes")


if __name__ == "__main__":
    main()
