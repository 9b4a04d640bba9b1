"""Bounded load test: concurrent clients submit jobs, poll them and call /predict against a local stack.

Usage:
    .venv/bin/python bench/loadtest.py                    # starts `predictq up` on a free port, 8 clients, 20 s
    .venv/bin/python bench/loadtest.py --clients 16 --duration 30
    .venv/bin/python bench/loadtest.py --url http://127.0.0.1:1313 --api-key KEY   # an already running stack

Reports requests, errors by status and p50/p99 latency per kind; exits 1 if any answer was a 5xx (or a request
failed outright). Bounded: at most --duration seconds (capped at 300) and --max-requests requests; loopback only.
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

from model.synth import write_synth
from predictq.localredis import free_port

MAX_DURATION = 300.0
MAX_CLIENTS = 64
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Tally:
    """Latencies and statuses per request kind, shared by all client threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, failure: str) -> None:
        """Keep a description of a request that got no answer (the first few are printed)."""
        with self.lock:
            self.failures.append(failure)

    def record(self, kind: str, status: int, seconds: float) -> None:
        """Count one answer (status 0: no answer at all)."""
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[kind][status] += 1

    @property
    def total(self) -> int:
        with self.lock:
            return sum(sum(counter.values()) for counter in self.statuses.values())


@dataclass(frozen=True)
class Workload:
    """What the clients send: a small job body and a /predict batch, both synthetic."""

    job_csv: bytes
    predict_records: list[dict[str, str]]


def require_loopback(url: str) -> None:
    """Refuse any target that is not this machine: a load test never leaves the loopback interface."""
    host = urlsplit(url).hostname or ""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(addr.split("%")[0]).is_loopback for addr in addresses):
        raise SystemExit(f"loadtest: {url} is not a loopback address; refusing")


def make_workload(job_rows: int, predict_rows: int, seed: int) -> Workload:
    """Synthetic rows from the model's own column statistics (no real rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        write_synth(path, max(job_rows, predict_rows), seed)
        text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    job_csv = "".join(lines[: job_rows + 1]).encode()
    records = list(csv.DictReader(io.StringIO("".join(lines[: predict_rows + 1]))))
    return Workload(job_csv, records)


def timed(tally: Tally, kind: str, session: requests.Session, method: str, url: str, **kwargs: object) -> object:
    """One request, timed and tallied; returns the response or None when no answer came."""
    start = time.perf_counter()
    try:
        response = session.request(method, url, timeout=60, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        tally.record(kind, 0, time.perf_counter() - start)
        tally.note(f"{kind}: {type(exc).__name__} after {time.perf_counter() - start:.1f}s: {exc}")
        return None
    tally.record(kind, response.status_code, time.perf_counter() - start)
    return response


def client_loop(
    url: str, key: str, work: Workload, tally: Tally, stop: threading.Event, max_requests: int, seed: int
) -> None:
    """One client: mostly /predict, sometimes a job submitted then polled until done and its results fetched."""
    rng = random.Random(seed)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    while not stop.is_set() and tally.total < max_requests:
        if rng.random() < 0.7:
            timed(tally, "predict", session, "POST", f"{url}/predict", json=work.predict_records)
            continue
        response = timed(
            tally, "submit", session, "POST", f"{url}/v1/jobs", data=work.job_csv,
            headers={"Content-Type": "text/csv"},
        )
        if response is None or response.status_code != 202:  # type: ignore[attr-defined]
            time.sleep(0.2)  # refused (429 or backpressure): back off as a real client would
            continue
        job_url = f"{url}{response.headers['Location']}"  # type: ignore[attr-defined]
        while not stop.is_set() and tally.total < max_requests:
            poll = timed(tally, "poll", session, "GET", job_url)
            state = poll.json().get("state") if poll is not None and poll.status_code == 200 else None  # type: ignore[attr-defined]
            if state in TERMINAL:
                timed(tally, "results", session, "GET", f"{job_url}/results", params={"format": "csv"})
                break
            time.sleep(0.1)


LOADTEST_ENV = {
    "PREDICTQ_RATE_LIMIT_SUBMIT": "100000/minute",
    "PREDICTQ_RATE_LIMIT_POLL": "1000000/minute",
    "PREDICTQ_RATE_LIMIT_PREDICT": "1000000/minute",
    "PREDICTQ_CHUNK_ROWS": "500",
}


@dataclass(frozen=True)
class RunningStack:
    """A `predictq up` started by this module: where to reach it and the supervisor's pid."""

    url: str
    key: str
    redis_url: str
    pid: int


@contextmanager
def local_stack(
    workers: int, log_dir: Path, overrides: dict[str, str], api_workers: int = 2
) -> Iterator[RunningStack]:
    """`predictq up` on a free port with a private Redis and the `PREDICTQ_*` overrides given; stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    # Nothing answers at this REDIS_URL, so `up` starts a private Redis.
    env.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **overrides)
    argv = [
        sys.executable, "-c", "from predictq.cli import main; main()", "up", "--port", str(free_port()),
        "--workers", str(workers), "--api-workers", str(api_workers), "--log-dir", str(log_dir),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            banner += line
            if "Press Ctrl-C" in line:
                break
        url, key = re.search(r"up at (\S+)", banner), re.search(r"API key: (\S+)", banner)
        redis_url = re.search(r"redis: +(\S+)", banner)
        if not url or not key or not redis_url:
            raise SystemExit(f"predictq up did not start:\n{banner}")
        # Keep reading what `up` prints, so it can never block on a full pipe while it stops its children.
        threading.Thread(target=proc.stdout.read, name="up-output", daemon=True).start()
        yield RunningStack(url.group(1), key.group(1), redis_url.group(1), proc.pid)
    finally:
        children = _child_pids(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            # `up` runs each child in its own process group: a supervisor killed before it finished stopping
            # them must not leave them behind.
            for pid in children:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def _child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def report(tally: Tally, seconds: float) -> int:
    """Print the table; return the exit code (1 when any 5xx or failed request was seen)."""
    print(f"{'kind':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    bad = 0
    for kind in sorted(tally.statuses):
        lat = np.array(tally.latencies[kind]) * 1000
        statuses = tally.statuses[kind]
        bad += sum(n for status, n in statuses.items() if status == 0 or status >= 500)
        shown = " ".join(f"{status or 'no-answer'}:{n}" for status, n in sorted(statuses.items()))
        print(
            f"{kind:<8} {len(lat):>8} {len(lat) / seconds:>7.1f} {np.percentile(lat, 50):>8.1f} "
            f"{np.percentile(lat, 99):>8.1f}  {shown}"
        )
    everything = Counter[int]()
    for counter in tally.statuses.values():
        everything.update(counter)
    errors = {status: n for status, n in everything.items() if status == 0 or status >= 400}
    for failure in tally.failures[:5]:
        print(f"no answer: {failure}")
    print(f"total {tally.total} requests in {seconds:.1f}s; errors by status: {errors or 'none'}; 5xx/failed: {bad}")
    return 1 if bad else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running stack on this machine (default: start one with `predictq up`).")
    parser.add_argument("--api-key", default=os.environ.get("PREDICTQ_API_KEY"), help="Key for --url.")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds (at most 300).")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--job-rows", type=int, default=2_000)
    parser.add_argument("--predict-rows", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="Celery workers for the stack this script starts.")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.duration = min(max(args.duration, 1.0), MAX_DURATION)
    args.clients = min(max(args.clients, 1), MAX_CLIENTS)
    return args


def run(url: str, key: str, args: argparse.Namespace) -> int:
    """Drive the clients for the configured time, then report."""
    require_loopback(url)
    work = make_workload(args.job_rows, args.predict_rows, args.seed)
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(
            target=client_loop, args=(url, key, work, tally, stop, args.max_requests, args.seed + i), daemon=True
        )
        for i in range(args.clients)
    ]
    print(f"loadtest: {args.clients} clients for {args.duration:.0f}s against {url}", flush=True)
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(args.duration)
    stop.set()
    for thread in threads:
        thread.join(timeout=70)
    return report(tally, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.url:
        return run(args.url.rstrip("/"), args.api_key or "", args)
    with tempfile.TemporaryDirectory(prefix="predictq-loadtest-") as logs, local_stack(
        args.workers, Path(logs), LOADTEST_ENV
    ) as stack:
        return run(stack.url, stack.key, args)


if __name__ == "__main__":
    sys.exit(main())
