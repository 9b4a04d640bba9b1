"""The stack across four hosts, with faults while jobs run; after each, every row of every job is checked.

Host A runs Redis, host B the API, hosts C and D a worker each (see conftest.py). The faults: a worker cut off
from Redis for longer than its chunk lease (its chunk goes to the other worker, its late commit is refused and
counted), the API cut off from Redis mid-upload and mid-download, Redis killed and restarted from its
append-only file, a worker host lost for good, and slow, lossy links to both workers. The checker (checker.py)
prints its figures per fault at the end of the run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import requests

from jobs.keys import JobKeys
from model.synth import write_synth
from tests.multihost.checker import Figures, check_jobs, check_scores, get_json, reference, wait_closed
from tests.multihost.conftest import STACK_SETTINGS, Stack, wait_until
from tests.multihost.hosts import Host

ROWS = 20_000
KEY_PREFIX = "pq"
LEASE_SECONDS = int(STACK_SETTINGS["PREDICTQ_CHUNK_LEASE_SECONDS"])


@pytest.fixture(scope="module")
def scorer() -> Any:
    from model.scoring import load_scorer

    return load_scorer()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, scorer: Any) -> list[tuple[Path, pa.Table]]:
    """Two synthetic CSV bodies and their in-process scores."""
    folder = tmp_path_factory.mktemp("multihost-data")
    made = []
    for seed in (21, 22):
        path = folder / f"rows-{seed}.csv"
        write_synth(path, ROWS, seed=seed)
        made.append((path, reference(path, scorer)))
    return made


def submit(hosts: Stack, inputs: list[tuple[Path, pa.Table]]) -> list[tuple[str, pa.Table]]:
    """Upload each body to the API on host B; (job id, expected scores) of each."""
    session = hosts.session()
    jobs = []
    for path, expected in inputs:
        with path.open("rb") as body:
            response = session.post(
                f"{hosts.api_url}/v1/jobs", data=body, headers={"Content-Type": "text/csv"}, timeout=120
            )
        assert response.status_code == 202, response.text
        jobs.append((response.json()["id"], expected))
    return jobs


def chunks_committed(log: str) -> int:
    """Chunks a worker's log says it committed."""
    return log.count(": committed") + log.count(": finished")


def lease_held_on(hosts: Stack, host: Host, job_ids: list[str], timeout: float = 60.0) -> tuple[str, int, int]:
    """Wait until a process of `host` holds a chunk's lease; (job id, chunk index, attempt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = leases_of(hosts, host, job_ids)
        if held:
            return held[0]
        time.sleep(0.002)
    pytest.fail(f"no chunk was seen in the hands of host {host.name.upper()} within {timeout}s")


def leases_of(hosts: Stack, host: Host, job_ids: list[str]) -> list[tuple[str, int, int]]:
    """The chunks whose lease a process of `host` holds now: (job id, chunk index, attempt)."""
    client = hosts.redis()
    pids = host.pids()
    held = []
    for job_id in job_ids:
        for index, lease in client.hgetall(JobKeys(KEY_PREFIX, job_id).leases).items():
            _, pid, _, attempt = lease.decode().rsplit("|", 3)
            if int(pid) in pids:
                held.append((job_id, int(index), int(attempt)))
    return held


def refused_since(hosts: Stack, before: dict[str, int]) -> dict[str, int]:
    now = get_refused(hosts)
    return {reason: now.get(reason, 0) - before.get(reason, 0) for reason in now}


def get_refused(hosts: Stack) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while True:
        try:
            return hosts.refused_commits()
        except requests.RequestException:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def cut_mid_chunk(hosts: Stack, host: Host, job_ids: list[str]) -> tuple[str, int, int]:
    """Cut `host` off from host A while one of its processes holds a chunk: the host is frozen (SIGSTOP) to
    see which chunk it holds, cut off, then let go on. Returns (job id, chunk index, attempt)."""
    for _ in range(50):
        lease_held_on(hosts, host, job_ids)
        host.freeze()
        held = leases_of(hosts, host, job_ids)
        if held:
            host.cut_from(hosts.a)
            host.thaw()
            return held[0]
        host.thaw()  # it committed in between: try the next chunk
    pytest.fail(f"host {host.name.upper()} was never caught holding a chunk")


def test_worker_cut_off_from_redis_past_its_lease_never_duplicates_a_row(
    hosts: Stack, inputs: list[tuple[Path, pa.Table]]
) -> None:
    """Host C is cut off from Redis while it scores a chunk, for longer than the chunk's lease: the reaper takes
    the lease back, host D scores the chunk, and once healed host C's commit is refused and counted. An attempt
    cut off before it read what it needs from Redis gives up without a result (no late commit to see): then the
    fault is repeated, up to three rounds, and every round's jobs are checked."""
    before = get_refused(hosts)
    figures = Figures("worker C cut off from Redis past its lease")
    all_jobs: list[tuple[str, pa.Table]] = []
    client = hosts.redis()
    late: dict[str, int] = {}
    for round_ in range(1, 4):
        jobs = submit(hosts, inputs)
        all_jobs += jobs
        job_id, index, attempt = cut_mid_chunk(hosts, hosts.c, [job_id for job_id, _ in jobs])
        cut_at = time.monotonic()
        keys = JobKeys(KEY_PREFIX, job_id)
        wait_until(
            partial(client.sismember, keys.committed, index), f"chunk {index} is committed by host D", timeout=90
        )
        held = time.monotonic() - cut_at
        attempts = int(client.hget(keys.attempts, index))
        hosts.c.heal()
        assert attempts >= 2 and held > LEASE_SECONDS, (attempts, held)
        # Refused as "duplicate" while the job is open, as "closed" once the other chunks finished it.
        deadline = time.monotonic() + 3 * float(STACK_SETTINGS["PREDICTQ_REDIS_SOCKET_TIMEOUT"]) + 5
        while time.monotonic() < deadline and sum(late.values()) < 1:
            late = refused_since(hosts, before)
            time.sleep(0.5)
        figures.notes.append(
            f"round {round_}: chunk {index} cut off on C (attempt {attempt}) for {held:.1f}s "
            f"(lease {LEASE_SECONDS}s), scored by D (attempt {attempts}); late commit refused: "
            f"{'yes' if sum(late.values()) else 'no, the attempt gave up without a result'}"
        )
        if sum(late.values()):
            break
    check_jobs(figures, hosts.session(), hosts.api_url, all_jobs)
    # Healed, host C takes work again (a Celery worker whose connection broke must not stay idle).
    log_before = len(hosts.c.log("worker"))
    check_jobs(figures, hosts.session(), hosts.api_url, submit(hosts, inputs))
    scored_by_c = chunks_committed(hosts.c.log("worker")[log_before:])
    figures.notes.append(f"after healing, C committed {scored_by_c} chunks of 2 new jobs")
    figures.refused = refused_since(hosts, before)
    assert sum(figures.refused.values()) >= 1, "no late commit was seen in three rounds"
    assert (figures.lost, figures.duplicated, figures.failed) == (0, 0, [])
    assert figures.once == figures.rows
    assert scored_by_c > 0


def paced_body(path: Path, on_half: Any, block: int = 256 * 1024, pause: float = 0.02) -> Iterator[bytes]:
    """The file in blocks (a chunked upload), calling `on_half()` once half of it was sent."""
    size = path.stat().st_size
    sent = 0
    called = False
    with path.open("rb") as stream:
        while data := stream.read(block):
            yield data
            sent += len(data)
            if not called and sent >= size // 2:
                on_half()
                called = True
            time.sleep(pause)


def test_api_cut_off_from_redis_mid_upload_and_mid_download_answers_503(
    hosts: Stack, inputs: list[tuple[Path, pa.Table]]
) -> None:
    session = hosts.session()
    path, expected = inputs[0]
    known = {job["id"] for job in get_json(session, f"{hosts.api_url}/v1/jobs?limit=100")["items"]}
    # Mid-upload: half the body is sent, then host B loses Redis.
    response = session.post(
        f"{hosts.api_url}/v1/jobs",
        data=paced_body(path, lambda: hosts.b.cut_from(hosts.a)),
        headers={"Content-Type": "text/csv"},
        timeout=120,
    )
    upload_status = response.status_code
    assert upload_status == 503, response.text
    assert response.json()["error"]["code"] == "storage_unavailable"
    # A download started while host B cannot reach Redis: 503 too.
    done_jobs = submit_after_heal(hosts, inputs[:1])
    hosts.b.cut_from(hosts.a)
    refused_download = session.get(f"{hosts.api_url}/v1/jobs/{done_jobs[0][0]}/results?format=csv", timeout=60)
    assert refused_download.status_code == 503
    assert refused_download.json()["error"]["code"] == "storage_unavailable"
    hosts.b.heal()
    # The half-uploaded job: found in the tenant's list, failed by the reaper, nothing of it shown.
    listed = get_json(session, f"{hosts.api_url}/v1/jobs?limit=100")["items"]
    [half_uploaded_id] = {job["id"] for job in listed} - known - {done_jobs[0][0]}
    half_uploaded = wait_closed(session, hosts.api_url, half_uploaded_id)
    assert half_uploaded["state"] == "failed" and half_uploaded["reason_code"] == "upload_incomplete", half_uploaded
    # Mid-download: the stream starts, then host B loses Redis; what arrives is whole or visibly cut, never short.
    wait_closed(session, hosts.api_url, done_jobs[0][0])
    with session.get(
        f"{hosts.api_url}/v1/jobs/{done_jobs[0][0]}/results?format=csv", stream=True, timeout=60
    ) as stream:
        assert stream.status_code == 200
        blocks = stream.iter_content(64 * 1024)
        parts = [next(blocks)]
        hosts.b.cut_from(hosts.a)
        try:
            parts += list(blocks)
            cut_short = False
        except requests.RequestException:
            cut_short = True
    hosts.b.heal()
    if not cut_short:
        table = pacsv.read_csv(io.BytesIO(b"".join(parts)))
        assert table["row"].to_pylist() == list(range(expected.num_rows))
        check_scores(table, expected)
    stream_end = "broke off visibly" if cut_short else "completed whole (results are read from the store)"
    figures = Figures(
        "API B cut off from Redis mid-upload and mid-download",
        notes=[
            f"upload answered {upload_status} storage_unavailable, its job failed "
            f"({half_uploaded['reason_code']}); download started during the cut answered "
            f"{refused_download.status_code}; download cut mid-stream {stream_end}"
        ],
    )
    check_jobs(figures, session, hosts.api_url, [*done_jobs, (half_uploaded["id"], expected)])
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert figures.failed == ["upload_incomplete"] and figures.succeeded == 1


def submit_after_heal(hosts: Stack, inputs: list[tuple[Path, pa.Table]]) -> list[tuple[str, pa.Table]]:
    """Heal host B, then submit (the upload that failed above is left to the reaper)."""
    hosts.b.heal()
    return submit(hosts, inputs)


def test_redis_killed_and_restarted_while_workers_and_api_run(
    hosts: Stack, inputs: list[tuple[Path, pa.Table]]
) -> None:
    jobs = submit(hosts, inputs)
    client = hosts.redis()
    wait_until(lambda: client.scard(JobKeys(KEY_PREFIX, jobs[0][0]).committed) >= 2, "chunks are committed")
    done = [client.scard(JobKeys(KEY_PREFIX, job_id).committed) for job_id, _ in jobs]
    hosts.kill_redis()
    time.sleep(2.0)
    hosts.start_redis()
    figures = check_jobs(Figures("Redis on A killed and restarted (AOF)"), hosts.session(), hosts.api_url, jobs)
    # Both workers reconnected and take work again (a Celery consumer must not stay idle after its broker
    # connection broke).
    logs = {host.name: len(host.log("worker")) for host in hosts.workers}
    check_jobs(figures, hosts.session(), hosts.api_url, submit(hosts, inputs))
    after = {host.name: chunks_committed(host.log("worker")[logs[host.name] :]) for host in hosts.workers}
    totals = [get_json(hosts.session(), f"{hosts.api_url}/v1/jobs/{job_id}")["chunks_total"] for job_id, _ in jobs]
    figures.notes.append(
        f"killed with {sum(done)} of {sum(totals)} chunks committed; after the restart C committed "
        f"{after['c']} and D {after['d']} chunks of 2 new jobs"
    )
    assert sum(done) < sum(totals)  # the jobs were running when Redis went
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert figures.once + figures.not_delivered == figures.rows
    assert after["c"] > 0 and after["d"] > 0


def slow_links(host: Host) -> str:
    """Delay and loss on the host's link: netem if the kernel has it, else tbf rate limiting plus an nftables
    random drop; returns which ran."""
    if (
        host.tc(
            "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "40ms", "10ms", "loss", "3%", check=False
        ).returncode
        == 0
    ):
        return "netem delay 40ms +/- 10ms, loss 3%"
    host.tc("qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "16kb", "latency", "200ms")
    host.drop_randomly(3)
    return "no netem in this kernel: tbf 2 mbit/s (200 ms queue) and nftables random drop 3%"


def test_slow_lossy_links_to_the_workers_finish_every_job_without_duplicates(
    hosts: Stack, inputs: list[tuple[Path, pa.Table]]
) -> None:
    """Both worker hosts on slow, lossy links, so that every chunk's traffic with Redis crosses one."""
    before = get_refused(hosts)
    logs = {host.name: len(host.log("worker")) for host in hosts.workers}
    applied = ""
    for host in hosts.workers:
        applied = slow_links(host)
    jobs = submit(hosts, inputs)
    figures = Figures(f"slow links on workers C and D ({applied})")
    try:
        check_jobs(figures, hosts.session(), hosts.api_url, jobs)
    finally:
        hosts.network.heal_all()
    by = {host.name: chunks_committed(host.log("worker")[logs[host.name] :]) for host in hosts.workers}
    figures.notes.append(f"C committed {by['c']} and D {by['d']} chunks over the slow links")
    figures.refused = refused_since(hosts, before)
    assert (figures.lost, figures.duplicated, figures.failed) == (0, 0, [])
    assert figures.once == figures.rows


def test_a_worker_host_lost_for_good_the_other_finishes_the_jobs(
    hosts: Stack, inputs: list[tuple[Path, pa.Table]]
) -> None:
    jobs = submit(hosts, inputs)
    job_ids = [job_id for job_id, _ in jobs]
    # Frozen first, so the chunk it holds at the moment it is lost is known, then killed.
    for _ in range(20):
        lease_held_on(hosts, hosts.d, job_ids)
        hosts.d.freeze()
        held = leases_of(hosts, hosts.d, job_ids)
        if held:
            break
        hosts.d.thaw()  # it committed in between: try the next chunk
    job_id, index, _ = held[0]
    hosts.d.kill_all()
    assert hosts.d.pids() == set()
    figures = check_jobs(Figures("worker host D lost for good"), hosts.session(), hosts.api_url, jobs)
    attempts = int(hosts.redis().hget(JobKeys(KEY_PREFIX, job_id).attempts, index))
    figures.notes.append(f"chunk {index} lost with D mid-attempt, scored again by C ({attempts} attempts)")
    assert attempts >= 2
    assert (figures.lost, figures.duplicated, figures.failed) == (0, 0, [])
    assert figures.once == figures.rows
