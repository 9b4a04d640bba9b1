"""HTTP client for a predictq server: streamed uploads, polling and streamed downloads, with progress hooks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from requests.adapters import HTTPAdapter

DEFAULT_URL = "http://127.0.0.1:1313"
UPLOAD_BLOCK_BYTES = 256 * 1024
DOWNLOAD_BLOCK_BYTES = 256 * 1024
# Job states after which nothing changes any more (worker.job_store.CLOSED_STATES); anything else is still moving.
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
}

Progress = Callable[[int], None]


class _LargeBlocks(HTTPAdapter):
    """Sends request bodies in UPLOAD_BLOCK_BYTES blocks: urllib3 reads 16 KB at a time by default, which makes
    a 1 GB upload 65,000 reads and sends (about 0.5 s of client time on a 2-core machine)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = UPLOAD_BLOCK_BYTES
        super().init_poolmanager(*args, **kwargs)


def _session() -> requests.Session:
    """A one-request session that sends bodies in large blocks (closed by the caller, as requests.request does)."""
    session = requests.Session()
    session.mount("http://", _LargeBlocks())
    session.mount("https://", _LargeBlocks())
    return session


class ClientError(RuntimeError):
    """The server refused a request or could not be reached; `status` is 0 when no HTTP answer came."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def content_type_for(path: Path) -> str:
    """The upload Content-Type implied by a file's extension (CSV, NDJSON, JSON or Parquet)."""
    try:
        return CONTENT_TYPES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(CONTENT_TYPES))
        raise ClientError(0, "unknown_format", f"{path.name}: extension must be one of {known}") from None


def format_for(path: Path | None, default: str = "csv") -> str:
    """The results format implied by an output path's extension (csv, ndjson, json or parquet)."""
    if path is None:
        return default
    formats = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".parquet": "parquet"}
    return formats.get(path.suffix.lower(), default)


class ProgressReader:
    """A file wrapper that reports every block read, with a length so requests sends Content-Length."""

    def __init__(self, raw: IO[bytes], size: int, on_read: Progress | None = None) -> None:
        self._raw = raw
        self._size = size
        self._on_read = on_read

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        """Read up to `n` bytes and report how many were read."""
        block = self._raw.read(UPLOAD_BLOCK_BYTES if n is None or n < 0 else n)
        if block and self._on_read is not None:
            self._on_read(len(block))
        return block


@dataclass(frozen=True)
class Client:
    """A predictq server at `base_url`, called with `api_key` when one is given."""

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_env(cls, url: str | None = None, api_key: str | None = None) -> Client:
        """Options first, then PREDICTQ_URL and PREDICTQ_API_KEY, then the local default URL."""
        return cls(
            base_url=(url or os.environ.get("PREDICTQ_URL") or DEFAULT_URL).rstrip("/"),
            api_key=api_key or os.environ.get("PREDICTQ_API_KEY") or None,
        )

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(extra or {})
        return headers

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request; raise ClientError for a connection failure or any 4xx/5xx answer."""
        headers = self._headers(kwargs.pop("headers", None))
        try:
            with _session() as session:
                response = session.request(
                    method, f"{self.base_url}{path}", headers=headers, timeout=self.timeout, **kwargs
                )
        except requests.ConnectionError as exc:
            raise ClientError(0, "unreachable", f"cannot reach {self.base_url}: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def predict(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Score a small batch inline (POST /predict)."""
        return self._request("POST", "/predict", json=list(records)).json()

    def submit(self, path: Path, on_upload: Progress | None = None) -> dict[str, Any]:
        """Upload a CSV / NDJSON / JSON file as a new job, streaming it from disk (POST /v1/jobs)."""
        size = path.stat().st_size
        with path.open("rb") as raw:
            body = ProgressReader(raw, size, on_upload)
            response = self._request(
                "POST", "/v1/jobs", data=body, headers={"Content-Type": content_type_for(path)}
            )
        return response.json()

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's current state and progress (GET /v1/jobs/{id})."""
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def summary(self, job_id: str) -> dict[str, Any]:
        """The job's phat histogram, outcome share, input data quality and drift (GET /v1/jobs/{id}/summary)."""
        return self._request("GET", f"/v1/jobs/{job_id}/summary").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the server to cancel a job (DELETE /v1/jobs/{id})."""
        response = self._request("DELETE", f"/v1/jobs/{job_id}")
        return response.json() if response.content else {"id": job_id}

    def wait(
        self,
        job_id: str,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.5,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job reaches a terminal state; `on_status` sees every answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if on_status is not None:
                on_status(job)
            if job_state(job) in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(0, "timeout", f"job {job_id} still {job_state(job)} after {timeout}s")
            time.sleep(interval)

    def iter_results(self, job_id: str, fmt: str = "csv", kind: str = "results") -> Iterator[bytes]:
        """Stream the job's results (or `kind="errors"`) as raw bytes in the given format."""
        response = self._request(
            "GET", f"/v1/jobs/{job_id}/{kind}", params={"format": fmt}, stream=True
        )
        with response:
            yield from response.iter_content(DOWNLOAD_BLOCK_BYTES)

    def download(self, job_id: str, out: IO[bytes], fmt: str = "csv", on_write: Progress | None = None) -> int:
        """Write the job's results to `out` as they arrive; returns the number of bytes written."""
        written = 0
        for block in self.iter_results(job_id, fmt):
            out.write(block)
            written += len(block)
            if on_write is not None:
                on_write(len(block))
        return written


def job_state(job: Mapping[str, Any]) -> str:
    """The job's state name from a status answer (queued, running, succeeded, failed, cancelled)."""
    return str(job.get("state") or "unknown")


def job_fraction(job: Mapping[str, Any]) -> float:
    """Completed fraction in [0, 1] from `progress`, or from `rows_done` over `rows_total`."""
    progress = job.get("progress")
    if isinstance(progress, int | float):
        return min(max(float(progress), 0.0), 1.0)
    done, total = job.get("rows_done"), job.get("rows_total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return min(done / total, 1.0)
    return 1.0 if job_state(job) in TERMINAL_STATES else 0.0


def _error_from(response: requests.Response) -> ClientError:
    """Turn the API's `{"error": {"code", "message"}}` body (or any other body) into a ClientError."""
    try:
        error = response.json().get("error", {})
        code, message = str(error.get("code", "http_error")), str(error.get("message", response.reason))
    except (ValueError, AttributeError):
        code, message = "http_error", response.text[:200] or str(response.reason)
    return ClientError(response.status_code, code, message)
