"""`predictq up` with no Redis answering: private Redis, workers, API; /predict, a job, `predictq submit`; Ctrl-C.

One stack serves the whole module (starting it costs seconds of CPU); the Ctrl-C test runs last.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from model.synth import write_synth
from predictq.client import Client
from predictq.errors import NotFound
from predictq.localredis import free_port, redis_answers

PREDICTQ = [sys.executable, "-c", "from predictq.cli import main; main()"]


@dataclass
class RunningUp:
    """A `predictq up` process, the banner it printed and the processes it started."""

    process: subprocess.Popen[str]
    url: str
    api_key: str
    redis_url: str
    log_dir: Path
    marker: str
    descendants: list[psutil.Process] = field(default_factory=list)

    def stop(self, timeout: float = 90.0) -> int:
        """Ctrl-C (SIGINT) to the supervisor only; returns its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def survivors(self) -> list[psutil.Process]:
        """Descendants seen while running, or any process carrying this run's marker, that still run."""
        return [proc for proc in {*self.descendants, *marked_processes(self.marker)} if running(proc)]


def running(proc: psutil.Process) -> bool:
    """True while the process exists and has not exited (a zombie has exited)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked_processes(marker: str) -> list[psutil.Process]:
    """Every process whose environment carries PREDICTQ_TEST_MARK=marker (children inherit it)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREDICTQ_TEST_MARK") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _reader(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


def start_up(log_dir: Path, workers: int = 1, api_workers: int = 2, timeout: float = 120.0) -> RunningUp:
    """Start `predictq up` on a private port with a REDIS_URL that nothing answers, and wait for its banner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    env["PREDICTQ_TEST_MARK"] = marker = f"up-{os.getpid()}-{time.monotonic_ns()}"
    port = free_port()
    process = subprocess.Popen(
        [
            *PREDICTQ, "up", "--port", str(port), "--workers", str(workers), "--api-workers", str(api_workers),
            "--log-dir", str(log_dir),
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + timeout
    while not any("Press Ctrl-C" in line for line in banner):
        try:
            banner.append(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
        except queue.Empty:
            process.kill()
            raise AssertionError(f"predictq up printed no banner in {timeout}s:\n{''.join(banner)}") from None
    text = "".join(banner)
    url = re.search(r"predictq is up at (\S+)", text)
    key = re.search(r"API key: (\S+)", text)
    redis_url = re.search(r"redis:\s+(\S+) \(private\)", text)
    assert url and key and redis_url, text
    assert url.group(1) == f"http://127.0.0.1:{port}"
    up = RunningUp(process, url.group(1), key.group(1), redis_url.group(1), log_dir, marker)
    up.descendants = psutil.Process(process.pid).children(recursive=True)
    return up


JOB_ROWS = 1500


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    running = start_up(tmp_path_factory.mktemp("up-logs"), workers=2)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.csv"
    assert write_synth(path, JOB_ROWS, seed=7) == JOB_ROWS
    return path


def auth(up: RunningUp) -> dict[str, str]:
    return {"Authorization": f"Bearer {up.api_key}"}


def test_started_private_redis_workers_and_api(up: RunningUp) -> None:
    names = " ".join(" ".join(proc.cmdline()) for proc in up.descendants)
    assert "redis-server" in names
    assert names.count("worker.celery_app worker") >= 2
    assert "gunicorn" in names
    assert redis_answers(up.redis_url)
    assert requests.get(f"{up.url}/healthz", timeout=5).status_code == 200


def test_requests_without_the_printed_key_are_refused(up: RunningUp) -> None:
    response = requests.post(f"{up.url}/predict", json=[{"x5": "monday"}], timeout=10)
    assert response.status_code == 401


def test_predict(up: RunningUp, rows_csv: Path) -> None:
    with rows_csv.open(newline="") as handle:
        records = [row for _, row in zip(range(20), csv.DictReader(handle), strict=False)]
    response = requests.post(f"{up.url}/predict", json=records, headers=auth(up), timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == 20
    assert all(0.0 <= item["phat"] <= 1.0 and item["business_outcome"] in (0, 1) for item in results)


def test_job_round_trip(up: RunningUp, rows_csv: Path) -> None:
    headers = {**auth(up), "Content-Type": "text/csv"}
    with rows_csv.open("rb") as body:
        response = requests.post(f"{up.url}/v1/jobs", data=body, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        job = requests.get(f"{up.url}{location}", headers=auth(up), timeout=10).json()
        if job["state"] in {"succeeded", "failed", "cancelled"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["state"] == "succeeded", json.dumps(job)
    results = requests.get(
        f"{up.url}/v1/jobs/{job_id}/results", params={"format": "csv"}, headers=auth(up), timeout=60
    )
    assert results.status_code == 200
    scored = list(csv.DictReader(io.StringIO(results.text)))
    assert len(scored) == JOB_ROWS
    assert [int(row["row"]) for row in scored] == list(range(JOB_ROWS))


def run_with_pty_stderr(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal (so progress bars draw, as for a person); return code, out, err."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        chunks: list[bytes] = []
        reader = threading.Thread(target=_drain_pty, args=(master, chunks), daemon=True)
        reader.start()
        out, _ = proc.communicate(timeout=timeout)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def _drain_pty(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            block = os.read(fd, 4096)
        except OSError:  # EIO once the writer side is closed
            return
        if not block:
            return
        chunks.append(block)


def test_cli_submit_wait_round_trip_with_progress(up: RunningUp, rows_csv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PREDICTQ_URL": up.url, "PREDICTQ_API_KEY": up.api_key, "COLUMNS": "120"}
    out_path = tmp_path / "scored.csv"
    code, out, err = run_with_pty_stderr(
        [*PREDICTQ, "submit", str(rows_csv), "--wait", "-o", str(out_path), "--poll-interval", "0.1"], env
    )
    assert code == 0, err
    assert "upload data.csv" in err and "100%" in err
    assert re.search(r"score\s+\S+", err)
    assert "succeeded" in err
    scored = list(csv.DictReader(out_path.open(newline="")))
    assert len(scored) == JOB_ROWS
    assert {"business_outcome", "phat", "row"} <= set(scored[0])
    job_id = re.search(r"job (\S+) accepted", err)
    assert job_id is not None

    code, out, _ = run_with_pty_stderr([*PREDICTQ, "status", job_id.group(1)], env)
    assert code == 0
    assert json.loads(out)["state"] == "succeeded"


def test_client_library_predict_errors_and_cancel(up: RunningUp, tmp_path: Path) -> None:
    """predictq.client against the real API: inline scoring, a job with a bad row, its errors, then cancel."""
    client = Client(up.url, up.api_key)
    good = {"x5": "monday", "x12": "$1,000.00", "x31": "asia", "x44": 0.1, "x53": 0.2, "x56": 0.3, "x58": 0.4,
            "x62": 0.5, "x81": "July", "x91": 0.6}
    scored = client.predict([good])
    assert isinstance(scored, list) and len(scored) == 1 and 0 <= scored[0]["phat"] <= 1

    bad = tmp_path / "bad.ndjson"
    bad.write_text("\n".join([json.dumps(good), "{not json", json.dumps(good)]) + "\n")
    job = client.wait(client.submit(bad).id, interval=0.1, timeout=120)
    assert job["state"] == "succeeded", job
    errors = b"".join(client.iter_results(job["id"], "ndjson", kind="errors")).decode().splitlines()
    assert [json.loads(line)["row"] for line in errors] == [1]
    sink = io.BytesIO()
    assert client.download(job["id"], sink, "ndjson") == len(sink.getvalue()) > 0
    assert [json.loads(line)["row"] for line in sink.getvalue().decode().splitlines()] == [0, 2]

    cancelled = client.cancel(job["id"])
    assert cancelled["state"] == "succeeded"  # a finished job stays as it ended
    with pytest.raises(NotFound) as missing:
        client.status("no-such-job")
    assert missing.value.status == 404 and missing.value.request_id


def test_metrics_sum_over_api_workers(up: RunningUp) -> None:
    """Two gunicorn workers answer; /metrics (multiprocess mode, set up by predictq.gunicorn_conf) counts both."""
    for _ in range(6):
        assert requests.get(f"{up.url}/healthz", timeout=5).status_code == 200
    text = requests.get(f"{up.url}/metrics", headers=auth(up), timeout=10).text
    assert "predictq_http_requests" in text
    assert "predictq_queued_rows" in text


def test_ctrl_c_stops_every_child(up: RunningUp) -> None:
    """Runs last in this module: SIGINT to the supervisor leaves no process it started."""
    assert up.descendants, "predictq up started no processes"
    assert len(marked_processes(up.marker)) > len(up.descendants) / 2, "the marker must find the children"
    assert up.stop() == 0
    assert up.survivors() == []
    assert not redis_answers(up.redis_url)
    output = up.process.stdout.read() if up.process.stdout else ""
    assert "Traceback" not in output


def test_a_child_that_dies_at_start_stops_the_rest(tmp_path: Path) -> None:
    """A broken key list makes the API fail to boot: `up` reports its log, exits 1 and leaves nothing behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    marker = f"broken-{os.getpid()}-{time.monotonic_ns()}"
    env.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", PREDICTQ_API_KEYS="no-tenant-here",
               PREDICTQ_TEST_MARK=marker)
    result = subprocess.run(
        [*PREDICTQ, "up", "--port", str(free_port()), "--workers", "1", "--log-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "predictq up: api exited" in result.stderr
    assert "PREDICTQ_API_KEYS" in result.stderr  # the tail of the API's log says why
    assert "predictq is up" not in result.stdout
    assert [proc for proc in marked_processes(marker) if running(proc)] == []
