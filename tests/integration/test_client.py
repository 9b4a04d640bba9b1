"""predictq.Client against the real stack (gunicorn, Redis, Celery workers): score() on the real rows and on a
200,000-row frame, retries on the real rate limiter, a submit whose reply is lost retried into exactly one
job, racing submits with one Idempotency-Key, and one failing request's id in the API's and worker's logs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from core.settings import Settings
from model.synth import iter_synth
from predictq.client import Client
from predictq.errors import NotFound
from tests.integration.servers import ApiServer, gunicorn_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "client-key"


@dataclasses.dataclass
class Api:
    """A running API and the client options for it."""

    server: ApiServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def log(self) -> Path:
        return self.server.log

    def client(self, url: str | None = None, **options: Any) -> Client:
        return Client(url or self.url, KEY, **options)


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=25_000)


@pytest.fixture
def start_api(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Start gunicorn (tests.integration.servers) with extra environment; every one is stopped after the test."""
    numbers = itertools.count()
    with ExitStack() as running:

        def start(**env: str) -> Api:
            full_env = {**worker_env, "PREDICTQ_API_KEYS": f"{KEY}:acme", "PREDICTQ_API_WORKERS": "2",
                        "PREDICTQ_API_THREADS": "4", "PREDICTQ_LOG_LEVEL": "info", **env}
            log_path = tmp_path / f"api-{next(numbers)}.log"
            return Api(running.enter_context(gunicorn_server(full_env, log_path)))

        yield start


@pytest.mark.reference
def test_score_on_the_real_rows_equals_predict_and_the_reference(
    reference_dir: Path, start_api: Callable[..., Api]
) -> None:
    records = json.loads((reference_dir / "exercise_26_test_rows_0_999.json").read_bytes())
    reference = pd.read_csv(reference_dir / "reference_phat_0_999.csv").set_index("row")["phat"]
    client = start_api().client(sync_rows=300)  # four /predict batches
    frame = pd.DataFrame(records)
    frame.index = pd.Index([f"customer-{i}" for i in range(len(frame))])
    scored = client.score(frame)
    assert list(scored.index) == list(frame.index)
    inline = client.predict(records)
    by_predict = pd.Series([r.get("phat", np.nan) for r in inline], index=frame.index)
    assert scored["phat"].equals(by_predict)
    assert scored["error"].isna().tolist() == ["error" not in r for r in inline]
    got = scored["phat"].dropna()
    positions = [frame.index.get_loc(label) for label in got.index]
    assert len(got) == len(reference) == 1000
    assert np.abs(got.to_numpy() - reference.loc[positions].to_numpy()).max() <= 1e-12


def test_a_200000_row_frame_goes_through_a_job(start_api: Callable[..., Api], celery_workers: Any,
                                                scorer: Any) -> None:
    celery_workers.start(concurrency=2)
    table = next(iter_synth(200_000, seed=5, chunk_rows=200_000))
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(10**6, 10**6 + len(frame))
    client = start_api().client()
    scored = client.score(frame)
    expected = scorer.score_frame(table)
    assert list(scored.index) == list(frame.index)
    scored_rows = expected.outputs.index.to_numpy()
    assert scored["phat"].iloc[scored_rows].to_numpy().tolist() == expected.outputs["phat"].tolist()
    failed = sorted({e.row for e in expected.errors})
    assert np.flatnonzero(scored["error"].notna().to_numpy()).tolist() == failed
    assert scored["phat"].iloc[failed].isna().all()
    job = next(client.jobs())
    assert (job.state, job.data["rows_total"]) == ("succeeded", 200_000)
    assert job.results(as_="arrow").num_rows == 200_000 - len(failed)


def test_the_real_rate_limiter_is_waited_out(start_api: Callable[..., Api]) -> None:
    client = start_api(PREDICTQ_RATE_LIMIT_POLL="2/second").client(max_attempts=10)
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        time.sleep(seconds)

    client._sleep = sleep
    for _ in range(6):
        with pytest.raises(NotFound):
            client.status("zzzzzzz-00000000000000000000")  # a well-formed id of no job
    # Six polls in a 2-per-second window: at least two 429s, each waited out for its Retry-After (whole seconds).
    assert len(waited) >= 2 and all(s >= 1 and s == int(s) for s in waited)


class DroppingProxy:
    """A loopback TCP proxy to `upstream`: the first `drops` connections have their request forwarded whole,
    but the server's reply is swallowed and the client's connection closed (a reply lost on the way back)."""

    def __init__(self, upstream: int, drops: int = 1) -> None:
        self.upstream = upstream
        self.drops = drops
        self.dropped = 0
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            drop = self.dropped < self.drops
            self.dropped += drop
            threading.Thread(target=self._serve, args=(client, drop), daemon=True).start()

    def _serve(self, client: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        if drop:
            upstream.recv(65536)  # the reply has started: the job exists; the client never sees it
            client.shutdown(socket.SHUT_RDWR)
            client.close()
            upstream.close()
            return
        self._pump(upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()


def synth_csv(tmp_path: Path, rows: int, seed: int = 9) -> Path:
    path = tmp_path / f"rows-{rows}.csv"
    next(iter_synth(rows, seed=seed, chunk_rows=rows)).to_pandas().to_csv(path, index=False)
    return path


def test_a_submit_whose_reply_is_lost_is_retried_into_one_job(start_api: Callable[..., Api], celery_workers: Any,
                                                              tmp_path: Path) -> None:
    celery_workers.start()
    api = start_api()
    proxy = DroppingProxy(api.port)
    try:
        data = synth_csv(tmp_path, 30_000)
        job = api.client(f"http://127.0.0.1:{proxy.port}").submit(data)
    finally:
        proxy.close()
    assert (proxy.dropped, proxy.connections) == (1, 2)
    jobs = list(api.client().jobs())
    assert [j.id for j in jobs] == [job.id]
    assert job.wait(timeout=120).state == "succeeded"
    assert job.data["rows_total"] == 30_000


def test_racing_submits_with_one_key_make_one_job(start_api: Callable[..., Api], tmp_path: Path) -> None:
    api = start_api()
    data = synth_csv(tmp_path, 100_000)
    body = data.read_bytes()

    def raw_post(_: int) -> requests.Response:
        return requests.post(f"{api.url}/v1/jobs", data=body, timeout=120, headers={
            "Authorization": f"Bearer {KEY}", "Content-Type": "text/csv", "Idempotency-Key": "race-1"})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(raw_post, range(2)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses in ([200, 202], [202, 409]), [a.text[:300] for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "idempotency_key_in_use"
            assert int(answer.headers["Retry-After"]) >= 1
    first = next(a for a in answers if a.status_code == 202).json()["id"]

    def client_submit(_: int) -> str:
        return api.client().submit(data, idempotency_key="race-2").id

    with ThreadPoolExecutor(2) as pool:
        second = set(pool.map(client_submit, range(2)))
    assert len(second) == 1
    assert sorted(j.id for j in api.client().jobs()) == sorted([first, *second])


def test_a_failing_requests_id_is_in_the_api_and_worker_logs(start_api: Callable[..., Api], celery_workers: Any,
                                                             worker_settings: Settings, tmp_path: Path) -> None:
    node = celery_workers.start()
    api = start_api(PREDICTQ_CHUNK_ROWS="2000")
    good = synth_csv(tmp_path, 20_000).read_bytes()
    # The whole body arrives and its chunks are scored, but it is not the body the client hashed.
    wrong = base64.b64encode(hashlib.sha256(b"another body").digest()).decode()
    response = requests.post(f"{api.url}/v1/jobs", data=good, timeout=60, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "text/csv", "X-Request-Id": "trace-me-4711",
        "Content-Digest": f"sha-256=:{wrong}:"})
    assert response.status_code == 400
    assert response.headers["X-Request-Id"] == "trace-me-4711"
    assert response.json()["error"]["details"]["request_id"] == "trace-me-4711"
    job_id = next(api.client().jobs()).id
    deadline = time.monotonic() + 60
    while " succeeded in " not in celery_workers.log(node):  # Celery's line after the first chunk task
        assert time.monotonic() < deadline, celery_workers.log(node)[-3000:]
        time.sleep(0.2)
    worker_log = celery_workers.log(node).splitlines()
    worker_lines = [line for line in worker_log if f"job {job_id} chunk" in line]
    worker_lines += [line for line in worker_log if "predictq.score_chunk[" in line and " succeeded in " in line]
    assert len(worker_lines) >= 2
    assert all(f"request_id=trace-me-4711 job_id={job_id}" in line for line in worker_lines), worker_lines
    api_lines = [line for line in api.log.read_text().splitlines() if "trace-me-4711" in line]
    assert any(f"upload of job {job_id} refused: digest_mismatch" in line for line in api_lines), api_lines
    assert any('"POST /v1/jobs HTTP/1.1" 400' in line for line in api_lines), api_lines


def test_job_methods_on_the_real_api(start_api: Callable[..., Api], celery_workers: Any, tmp_path: Path) -> None:
    celery_workers.start()
    client = start_api().client()
    frame = next(iter_synth(3_000, seed=2, chunk_rows=3_000)).to_pandas()
    frame.insert(0, "cid", [f"c{i}" if i % 2 else i for i in range(len(frame))])
    job = client.submit(frame, id_column="cid").wait(progress=True, timeout=120)
    assert job.state == "succeeded"
    results = job.results()
    assert results["row"].tolist() == sorted(results["row"].tolist())
    assert results["cid"].tolist() == [frame["cid"].iloc[r] if r % 2 else str(r) for r in results["row"]]
    saved = job.results(path=tmp_path / "out.ndjson")
    assert len(saved.read_text().splitlines()) == len(results)
    assert list(job.errors().columns) == ["row", "column", "message"]
    assert job.cancel().state == "succeeded"  # a finished job stays as it ended
    summary = job.summary()
    assert (summary["job_id"], summary["rows_scored"]) == (job.id, len(results))


def test_the_client_guide_runs(start_api: Callable[..., Api], celery_workers: Any, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python cell of docs/client.md, in order, against the real stack."""
    celery_workers.start(concurrency=2)
    api = start_api()
    monkeypatch.setenv("PREDICTQ_URL", api.url)
    monkeypatch.setenv("PREDICTQ_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    cells = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "client.md").read_text(), re.S)
    namespace: dict[str, Any] = {}
    for cell in cells:
        exec(compile(cell, "docs/client.md", "exec"), namespace)
    assert len(cells) >= 6
    assert list(namespace["scored"].index) == [f"customer-{i}" for i in range(2_000)]
    assert len(namespace["scored_big"]) == 60_000
    assert namespace["job"].state == "succeeded"
    assert namespace["results"]["customer_id"].tolist()[:2] == ["customer-0", "customer-1"]
    assert (tmp_path / "scored.csv").stat().st_size > 0
