"""docker-compose.yml in real containers, used as the README tells a user to: key, readiness, scoring, scaling, a
crashed worker restarted by its restart policy, and `down` then `up` keeping the volumes."""

from __future__ import annotations

import filecmp
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.container.compose_stack import COMPOSE_FILE, SERVICES, Stack, cli, record

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROWS = 100_000
TERMINAL = {"succeeded", "failed", "cancelled"}
ROW = {"x5": "monday", "x12": "$6,882.34", "x31": "germany", "x44": 0.5, "x53": 0.4, "x56": 0.1, "x58": 0.2,
       "x62": -0.3, "x81": "July", "x91": 0.25}


@pytest.fixture(scope="session")
def rows(tmp_path_factory: pytest.TempPathFactory, stack: Stack, api_key: str) -> dict[str, Path]:
    """100,000 synthetic rows as CSV, and the same rows scored in-process by `predictq score` on the host."""
    folder = tmp_path_factory.mktemp("rows")
    files = {"csv": folder / "rows.csv", "expected": folder / "expected.csv"}
    cli("synth", "--rows", str(ROWS), "--seed", "26", "-o", str(files["csv"]), stack=stack, key=api_key)
    cli("score", str(files["csv"]), "-o", str(files["expected"]), stack=stack, key=api_key)
    return files


@pytest.fixture(scope="session")
def host_job(rows: dict[str, Path], stack: Stack, api_key: str, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    """The rows submitted from the host with `predictq submit --wait -o`, as the README shows."""
    out = tmp_path_factory.mktemp("host-job") / "scored.csv"
    start = time.monotonic()
    done = cli("submit", str(rows["csv"]), "--wait", "-o", str(out), stack=stack, key=api_key)
    seconds = time.monotonic() - start
    match = re.search(r"job (\S+) accepted", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    return {"id": match.group(1), "output": out, "seconds": seconds}


def job_status(stack: Stack, key: str, job_id: str) -> dict[str, Any]:
    response = stack.get(f"/v1/jobs/{job_id}", key)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_job(stack: Stack, key: str, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := job_status(stack, key, job_id))["state"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job


def committed_chunks(stack: Stack, container: str, job_id: str) -> list[int]:
    """Chunk indexes of the job that the container's worker committed, from its log (the commit of the last chunk
    reports `finished`; a duplicate delivery reports `ignored` and is not counted)."""
    pattern = rf"job {re.escape(job_id)} chunk (\d+): (?:committed|finished)$"
    return [int(i) for i in re.findall(pattern, stack.logs(container), re.M)]


def chunks_by_worker(stack: Stack, containers: list[str], job_id: str, chunks: int) -> dict[str, list[int]]:
    """Committed chunk indexes per container, once their logs name `chunks` in all (a worker logs a chunk just
    after committing it, so the job can finish a moment before the last line is written)."""
    deadline = time.monotonic() + 30
    while True:
        found = {name: committed_chunks(stack, name, job_id) for name in containers}
        if sum(map(len, found.values())) >= chunks or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_containers_are_healthy_and_run_as_uid_10001(stack: Stack) -> None:
    for service in ("api", "worker"):
        (name,) = stack.containers(service)
        assert stack.inspect(name, "{{.Config.User}}") == "10001:10001"
        # The main process itself, not only what `exec` would run as.
        status = stack.engine("exec", name, "cat", "/proc/1/status")
        uids = re.search(r"^Uid:\s+(.+)$", status, re.M)
        assert uids and uids.group(1).split() == ["10001"] * 4, status
        assert stack.engine("exec", name, "id", "-u") == "10001"


def test_only_the_published_service_is_reachable_from_the_host(stack: Stack) -> None:
    published = [name for name in SERVICES if COMPOSE_FILE["services"][name].get("ports")]
    assert len(published) == 1, published
    port = stack.url.rsplit(":", 1)[1]
    for service in SERVICES:
        for name in stack.containers(service):
            ports = stack.engine("port", name)
            assert (f"127.0.0.1:{port}" in ports) if service in published else ports == "", (name, ports)
    ready = stack.get("/readyz")
    assert ready.status_code == 200, ready.text
    if published != ["api"]:
        # The proxy in front answers for the API (nginx names itself even with server_tokens off).
        assert ready.headers.get("Server", "").startswith("nginx"), ready.headers
    record("published service", f"{published[0]} on 127.0.0.1:{port}")


def test_development_key_is_printed_and_kept_in_the_volume(stack: Stack, api_key: str) -> None:
    (api,) = stack.containers("api")
    printed = re.search(r"development key for tenant 'local': (\S+)", stack.logs(api))
    assert printed and printed.group(1) == api_key
    assert stack.get("/v1/jobs", api_key).status_code == 200
    unauthorized = stack.get("/v1/jobs", "not-the-key")
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"]


def test_ready_and_one_row_scored_as_in_process(stack: Stack, api_key: str) -> None:
    from model.scoring import load_scorer

    ready = stack.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    answer = requests.post(f"{stack.url}/predict", json=ROW, headers={"Authorization": f"Bearer {api_key}"},
                           timeout=30)
    assert answer.status_code == 200, answer.text
    (expected,) = load_scorer().score_records([ROW]).to_records()
    assert answer.json() == expected


def test_csv_job_from_the_host_equals_in_process_scoring(stack: Stack, api_key: str, rows: dict[str, Path],
                                                         host_job: dict[str, Any]) -> None:
    job = job_status(stack, api_key, host_job["id"])
    assert (job["state"], job["rows_total"], job["rows_done"], job["rows_failed"]) == ("succeeded", ROWS, ROWS, 0)
    assert filecmp.cmp(host_job["output"], rows["expected"], shallow=False), "results differ from in-process"
    record("host job: rows, submit --wait -o", f"{ROWS:,} rows, {host_job['seconds']:.1f} s (1 worker)")


def test_two_workers_share_one_job(stack: Stack, api_key: str, rows: dict[str, Path], tmp_path: Path) -> None:
    start = time.monotonic()
    stack.compose("up", "-d", "--scale", "worker=2")
    stack.wait_healthy(workers=2)
    record("scaled to 2 workers, healthy", f"{time.monotonic() - start:.1f} s")
    done = cli("submit", str(rows["csv"]), "--wait", "-o", str(tmp_path / "scored.csv"), stack=stack, key=api_key)
    job_id = re.search(r"job (\S+) accepted", done.stdout + done.stderr).group(1)  # type: ignore[union-attr]
    assert filecmp.cmp(tmp_path / "scored.csv", rows["expected"], shallow=False)
    # The API cuts the body into ranges of PREDICTQ_CHUNK_BYTES: the job says how many it made.
    chunks = stack.get(f"/v1/jobs/{job_id}", api_key).json()["chunks_total"]
    assert chunks >= 4
    per_worker = chunks_by_worker(stack, stack.containers("worker"), job_id, chunks)
    record("chunks per worker (2 workers)", ", ".join(f"{name}: {len(c)}" for name, c in per_worker.items()))
    assert all(per_worker.values()), f"a worker scored no chunk: {per_worker}"
    everything = sorted(index for found in per_worker.values() for index in found)
    assert everything == list(range(chunks)), "a chunk scored twice or by no worker"


def newest_job(stack: Stack, key: str, earlier: set[str]) -> dict[str, Any] | None:
    """The newest job of the key's tenant if it is not one of `earlier`."""
    jobs = stack.get("/v1/jobs?limit=1", key).json()["items"]
    return jobs[0] if jobs and jobs[0]["id"] not in earlier else None


class HeldUpload:
    """A CSV upload that sends its first half, then waits for `release()` before sending the rest."""

    def __init__(self, stack: Stack, key: str, path: Path) -> None:
        self.path, self.released, self.response = path, threading.Event(), None
        self.thread = threading.Thread(target=self._post, args=(stack, key), daemon=True)

    def _body(self) -> Iterator[bytes]:
        half = self.path.stat().st_size // 2
        with self.path.open("rb") as source:
            yield source.read(half)
            assert self.released.wait(timeout=240), "upload never released"
            while block := source.read(1 << 18):
                yield block

    def _post(self, stack: Stack, key: str) -> None:
        self.response = requests.post(f"{stack.url}/v1/jobs", data=self._body(), timeout=300,
                                      headers={"Authorization": f"Bearer {key}", "Content-Type": "text/csv"})

    def release(self) -> requests.Response:
        self.released.set()
        self.thread.join(timeout=300)
        assert self.response is not None
        return self.response


def test_crashed_worker_is_restarted_and_the_job_scores_every_row_once(
        stack: Stack, api_key: str, rows: dict[str, Path], tmp_path: Path) -> None:
    stack.compose("up", "-d", "--scale", "worker=2")
    stack.wait_healthy(workers=2)
    crashed, stopped = stack.containers("worker")
    restarts_before = int(stack.inspect(crashed, "{{.RestartCount}}"))
    earlier = {job["id"] for job in stack.get("/v1/jobs?limit=100", api_key).json()["items"]}
    upload = HeldUpload(stack, api_key, rows["csv"])
    upload.thread.start()
    deadline = time.monotonic() + 120
    while not (job := newest_job(stack, api_key, earlier)) or job["rows_done"] == 0:
        assert time.monotonic() < deadline, "the held upload's first chunks were never scored"
        time.sleep(0.2)
    job_id = job["id"]
    assert job["state"] not in TERMINAL and not job["upload_complete"]
    before = {name: len(committed_chunks(stack, name, job_id)) for name in (crashed, stopped)}

    # One worker stopped by hand (`kill` disables its restart policy, as Docker documents for `docker kill`),
    # the other crashing: its main process SIGKILLed from the host, as the kernel's OOM killer would.
    stack.engine("kill", stopped)
    os.kill(int(stack.inspect(crashed, "{{.State.Pid}}")), signal.SIGKILL)
    killed_at = time.monotonic()
    response = upload.release()
    assert response.status_code == 202, response.text
    while int(stack.inspect(crashed, "{{.RestartCount}}")) == restarts_before:
        assert time.monotonic() - killed_at < 60, "the crashed worker was not restarted"
        time.sleep(0.2)
    restarted_in = time.monotonic() - killed_at
    stack.wait_healthy({"worker": 1})
    job = wait_for_job(stack, api_key, job_id)
    job_seconds = time.monotonic() - killed_at

    assert (job["state"], job["rows_total"], job["rows_done"], job["rows_failed"]) == ("succeeded", ROWS, ROWS, 0)
    cli("results", job_id, "-o", str(tmp_path / "scored.csv"), stack=stack, key=api_key)
    assert filecmp.cmp(tmp_path / "scored.csv", rows["expected"], shallow=False), "rows lost, doubled or changed"
    after = chunks_by_worker(stack, [crashed, stopped], job_id, job["chunks_total"])
    after_restart = len(after[crashed]) - before[crashed]
    assert after_restart > 0, "the restarted worker scored nothing"
    assert stack.inspect(stopped, "{{.State.Status}} {{.RestartCount}}") == "exited 0"
    record("crash: restart count, restarted after", f"{restarts_before} -> {restarts_before + 1}, {restarted_in:.1f} s")
    record("crash: chunks committed before the kill / by the restarted worker",
           f"{sum(before.values())} / {after_restart} of {job['chunks_total']}")
    requeued = sum(len(re.findall(r"reaper: requeued \[[^\]]", stack.logs(name))) for name in (crashed, stopped))
    record("crash: job done after the kill", f"{job_seconds:.1f} s, {job['rows_done']:,} rows, each once")
    record("crash: reaper passes that requeued chunks", requeued)
    record("`kill` of the other worker", "exited, not restarted (restart policy off until its next start)")
    stack.compose("up", "-d", "--scale", "worker=2")
    stack.wait_healthy(workers=2)
    assert stack.inspect(stopped, "{{.State.Status}}") == "running", "compose up did not start it again"


def test_down_then_up_keeps_the_key_and_finished_results(stack: Stack, api_key: str, rows: dict[str, Path],
                                                        host_job: dict[str, Any], tmp_path: Path) -> None:
    start = time.monotonic()
    stack.compose("down", "--remove-orphans")  # podman-compose leaves scaled containers without it
    assert stack.containers("api", every=True) == []
    stack.compose("up", "-d")
    stack.wait_healthy()
    record("down, up again and healthy", f"{time.monotonic() - start:.1f} s")
    key_file = stack.compose("exec", "-T", "api", "cat", "/var/lib/predictq/dev-api-key").strip()
    assert key_file == f"{api_key}:local"
    assert job_status(stack, api_key, host_job["id"])["state"] == "succeeded"
    cli("results", host_job["id"], "-o", str(tmp_path / "again.csv"), stack=stack, key=api_key)
    assert filecmp.cmp(tmp_path / "again.csv", rows["expected"], shallow=False)
