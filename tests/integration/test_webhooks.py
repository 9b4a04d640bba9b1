"""Job webhooks delivered by real Celery workers to a real HTTP receiver on loopback (explicitly allowed by
the test's settings): signed per Standard Webhooks, retried after two 500s with the same webhook-id, and never
sent to an address the allow list refuses."""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from core.settings import Settings
from core.states import FINAL_WEBHOOK_STATES
from core.webhooks import verify
from jobs.service import JobService
from model.readers import iter_chunks
from model.synth import iter_synth
from tests.support.http_server import serve_handler

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-32-bytes").decode()


@dataclass
class Receiver:
    """Answers each delivery with the next scripted status (then 200) and keeps what arrived."""

    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks/predictq?src=test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(statuses=[500, 500])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet."""

    with serve_handler(Handler) as url:
        state.port = int(url.rsplit(":", 1)[1])
        yield state


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=500, webhook_secret=SECRET,
                               webhook_allowed_hosts="127.0.0.1/32", webhook_retry_seconds=1,
                               webhook_max_attempts=5, webhook_timeout_seconds=5)


def run_job(service: JobService, callback_url: str, scorer: Any, rows: int = 1_200) -> str:
    """Create a job with a callback and stage `rows` synthetic rows as the API does."""
    job_id = service.create("acme", fmt="csv", callback_url=callback_url, request_id="req-webhook-1")["id"]
    table = next(iter_synth(rows, seed=3, chunk_rows=rows))
    body = table.to_pandas().to_csv(index=False).encode()
    staged = chunks = 0
    for chunk in iter_chunks(io.BytesIO(body), "csv", columns=scorer.required_columns,
                             chunk_rows=service.settings.chunk_rows):
        assert service.stage_chunk(job_id, chunks, chunk.table, chunk.errors)
        staged, chunks = staged + chunk.rows, chunks + 1
    service.seal(job_id, staged, chunks)
    return job_id


def wait_webhook(service: JobService, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = service.get("acme", job_id)
        if job["webhook"]["state"] in states:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"webhook never reached {states}: {job}")
        time.sleep(0.2)


def test_a_finished_job_is_delivered_signed_and_retried_after_500s(
    receiver: Receiver, celery_workers: Any, job_service: JobService, scorer: Any
) -> None:
    celery_workers.start()
    job_id = run_job(job_service, receiver.url(), scorer)
    job = wait_webhook(job_service, job_id, set(FINAL_WEBHOOK_STATES))
    assert job["state"] == "succeeded"
    assert job["webhook"] == {"url": receiver.url(), "state": "delivered", "attempts": 3, "last_status": 200,
                              "last_error": None}
    assert len(receiver.received) == 3
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1
    for headers, body in receiver.received:
        event = verify(body, headers, SECRET, tolerance=600)
        assert (event["type"], event["data"]["id"], event["data"]["rows_total"]) == ("job.succeeded", job_id, 1_200)
        assert headers["host"] == f"127.0.0.1:{receiver.port}"
    # The same event each time: only the timestamp and signature change between attempts.
    assert len({body for _, body in receiver.received}) == 1
    assert "req-webhook-1" in "".join(celery_workers.log(node) for node in celery_workers.processes)


def test_a_cancelled_job_is_delivered_once(receiver: Receiver, celery_workers: Any, job_service: JobService) -> None:
    receiver.statuses.clear()
    celery_workers.start()
    job_id = job_service.create("acme", fmt="csv", callback_url=receiver.url())["id"]
    job_service.cancel("acme", job_id)
    job_service.cancel("acme", job_id)
    job = wait_webhook(job_service, job_id, set(FINAL_WEBHOOK_STATES))
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("delivered", 1)
    assert [verify(body, headers, SECRET)["type"] for headers, body in receiver.received] == ["job.cancelled"]


def test_a_name_resolving_to_a_refused_address_is_never_contacted(
    receiver: Receiver, celery_workers: Any, job_service: JobService, worker_settings: Settings
) -> None:
    # "localhost" is an allowed name, but it resolves to loopback, which this worker's list does not allow.
    celery_workers.start(settings=dataclasses.replace(worker_settings, webhook_allowed_hosts="localhost"))
    job_id = job_service.create("acme", fmt="csv", callback_url=receiver.url("localhost"))["id"]
    job_service.cancel("acme", job_id)
    job = wait_webhook(job_service, job_id, set(FINAL_WEBHOOK_STATES))
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("refused", 1)
    assert "loopback" in job["webhook"]["last_error"]
    assert receiver.received == []
