"""The Python client of a predictq server, for notebooks and pipelines.

    from predictq import Client
    client = Client()                       # PREDICTQ_URL / PREDICTQ_API_KEY, else the local server
    scored = client.score(frame)            # a DataFrame aligned with frame's index
    job = client.submit("rows.csv", id_column="customer_id")
    job.wait(progress=True)
    results = job.results()                 # pandas; job.results(as_="arrow") or job.results(path="out.csv")

Calls that are safe to repeat (GET, DELETE, /predict, and job submits, which always carry an
Idempotency-Key) are retried on a connection failure, 429, 502, 503, 504 and a 409 for a key still in use,
waiting as Retry-After says (else an exponential backoff with jitter), within `max_attempts` and
`max_retry_seconds`. Failures raise the typed exceptions of `predictq.errors`.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from core.formats import FORMATS, extensions, format_for_path
from core.states import JobState
from predictq.errors import ApiError, JobFailed, WaitTimeout
from predictq.job import TERMINAL_STATES, Job, format_for, job_state
from predictq.transport import Progress, ProgressReader, Transport

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DOWNLOAD_BLOCK_BYTES = 256 * 1024
# The server's default PREDICTQ_MAX_SYNC_ROWS; a smaller server limit is learnt from its 413 answer.
DEFAULT_SYNC_ROWS = 10_000
# `Client.score` sends frames up to this many rows through /predict (in batches), larger ones as a job.
DEFAULT_JOB_THRESHOLD = 50_000


def content_type_for(path: Path, fmt: str | None = None) -> str:
    """The upload Content-Type for `fmt`, else implied by a file's extension (CSV, NDJSON, JSON or Parquet)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ApiError(0, "unknown_format", f"format must be one of {', '.join(FORMATS)}")
        return FORMATS[fmt].media_type
    found = format_for_path(path)
    if found is None:
        raise ApiError(0, "unknown_format", f"{path.name}: extension must be one of {', '.join(sorted(extensions()))}")
    return FORMATS[found].media_type


def check_received(job: Mapping[str, Any], size: int, sha256: str) -> None:
    """Raise when the server recorded another body than the one sent (it also checks the Content-Digest sent
    with it; this guards against a server or proxy that ignores the header)."""
    upload = job.get("upload") or {}
    got = (upload.get("bytes_received"), upload.get("sha256"))
    if got != (None, None) and got != (size, sha256):
        raise ApiError(0, "upload_mismatch", f"job {job.get('id')} recorded {got[0]} bytes with sha256 {got[1]}, "
                       f"but {size} bytes with sha256 {sha256} were sent")


class Client(Transport):
    """A predictq server at `url` (default PREDICTQ_URL, else http://127.0.0.1:1313), called with `api_key`
    (default PREDICTQ_API_KEY).

    `timeout` bounds each connect and each read (seconds); retries stop after `max_attempts` attempts or
    `max_retry_seconds` of waiting, whichever comes first (see `Transport`). `score` sends frames of up to
    `job_threshold` rows to /predict in batches of `sync_rows` (the server's PREDICTQ_MAX_SYNC_ROWS), larger
    ones as a job.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 max_attempts: int = 5, max_retry_seconds: float = 120.0, backoff: float = 0.5,
                 sync_rows: int = DEFAULT_SYNC_ROWS, job_threshold: int = DEFAULT_JOB_THRESHOLD) -> None:
        super().__init__(url, api_key, timeout=timeout, max_attempts=max_attempts,
                         max_retry_seconds=max_retry_seconds, backoff=backoff)
        self.sync_rows = sync_rows
        self.job_threshold = job_threshold

    @classmethod
    def from_env(cls, url: str | None = None, api_key: str | None = None) -> Client:
        """Options first, then PREDICTQ_URL and PREDICTQ_API_KEY, then the local default URL."""
        return cls(url, api_key)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- inline scoring --------------------------------------------------------------------------------------

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score up to the server's PREDICTQ_MAX_SYNC_ROWS records inline (POST /predict): one answer per record,
        in order; a record that could not be scored is answered with its `{"error": ...}` object."""
        body = orjson.dumps(list(records), default=str, option=orjson.OPT_SERIALIZE_NUMPY)
        return self._json("POST", "/predict", retry=True, data=body, headers={"Content-Type": "application/json"})

    def score(self, frame: pd.DataFrame, *, progress: bool = False) -> pd.DataFrame:
        """Score a DataFrame; the answer is aligned with `frame`'s index.

        Columns: `business_outcome`, `phat` and the model's inputs as scored, plus `error` (None for a scored
        row, else why the row could not be scored; its other columns are then missing). Frames of up to
        `job_threshold` rows go through /predict in batches of `sync_rows`; larger ones are submitted as a job
        (waited for, with a progress bar when `progress`), which is cheaper for the server per row.
        """
        import pandas as pd

        if len(frame) > self.job_threshold:
            return self._score_as_job(frame, progress)
        parts, start = [], 0
        while start < len(frame):
            batch = frame.iloc[start:start + self.sync_rows]
            try:
                parts.append(self._score_inline(batch))
            except ApiError as exc:
                limit = exc.details.get("max_rows")
                if exc.code != "too_many_rows" or not isinstance(limit, int) or limit >= len(batch):
                    raise
                self.sync_rows = limit  # the server's limit is lower than ours: learn it and send that much
                continue
            start += len(batch)
        out = pd.concat(parts) if parts else pd.DataFrame(columns=["error"])
        out.index = frame.index
        return out

    def _score_inline(self, batch: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        cells = batch.astype(object).where(batch.notna(), None)
        answers = self.predict(cells.to_dict(orient="records"))
        out = pd.DataFrame(answers)
        errors = out.pop("error") if "error" in out.columns else pd.Series(None, index=out.index, dtype=object)
        out = out[sorted(out.columns)]
        failed = errors.notna()
        out["error"] = None
        if failed.any():
            out.loc[failed, "error"] = [e.get("message") if isinstance(e, dict) else str(e) for e in errors[failed]]
        return out

    def _score_as_job(self, frame: pd.DataFrame, progress: bool) -> pd.DataFrame:
        job = self.submit(frame).wait(progress=progress)
        if job.state != JobState.SUCCEEDED:
            raise JobFailed(0, f"job_{job.state}", f"job {job.id} ended {job.state}: {job.data.get('reason')}")
        results = job.results().set_index("row").reindex(range(len(frame)))
        results = results[sorted(results.columns)]
        results["error"] = None
        errors = job.errors()
        if len(errors):
            first = errors.drop_duplicates("row")
            results.loc[first["row"].to_numpy(), "error"] = first["message"].to_numpy()
        results.index = frame.index
        return results

    # -- jobs --------------------------------------------------------------------------------------------------

    def submit(self, source: str | Path | pd.DataFrame | pa.Table, *, id_column: str | None = None,
               format: str | None = None, callback_url: str | None = None,
               idempotency_key: str | None = None, on_upload: Progress | None = None) -> Job:
        """Upload rows as a new job (POST /v1/jobs) and return it once the upload is complete.

        `source` is a path to a .csv / .ndjson / .json file (streamed from disk; `format` overrides the
        extension), a pandas DataFrame or a pyarrow Table (sent as CSV, its index not included; results carry
        each row's 0-based position as `row`). `id_column` is carried through to every result row;
        `callback_url` receives the signed job when it ends. Retries reuse one Idempotency-Key
        (`idempotency_key`, else a fresh one), so a retried submit never creates a second job.
        """
        key = idempotency_key or uuid.uuid4().hex
        params = {name: value for name, value in (("id_column", id_column), ("callback_url", callback_url))
                  if value is not None}
        with ExitStack() as cleanup:
            if isinstance(source, str | Path):
                path, content_type = Path(source), content_type_for(Path(source), format)
            else:
                path, content_type = cleanup.enter_context(_as_csv_file(source)), FORMATS["csv"].media_type
            size = path.stat().st_size
            with path.open("rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").digest()

            def body(stack: ExitStack) -> ProgressReader:
                return ProgressReader(stack.enter_context(path.open("rb")), size, on_upload)

            answer = self._json("POST", "/v1/jobs", retry=True, body=body, params=params, headers={
                "Content-Type": content_type, "Idempotency-Key": key,
                "Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:"})
        check_received(answer, size, digest.hex())
        return Job(self, answer)

    def job(self, job_id: str) -> Job:
        """The job with this id, as it is now."""
        return Job(self, self.status(job_id))

    def jobs(self, page_size: int = 100) -> Iterator[Job]:
        """Every live job of this key, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            params = {"limit": page_size, **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", "/v1/jobs", params=params)
            for item in page["items"]:
                yield Job(self, item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's current state and progress (GET /v1/jobs/{id})."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the server to cancel a job (DELETE /v1/jobs/{id}); a finished job stays as it ended."""
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def summary(self, job_id: str) -> dict[str, Any]:
        """The job's phat histogram, outcome share, input data quality and drift (GET /v1/jobs/{id}/summary)."""
        return self._json("GET", f"/v1/jobs/{job_id}/summary")

    def wait(self, job_id: str, on_status: Callable[[dict[str, Any]], None] | None = None,
             interval: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the job reaches a terminal state; `on_status` sees every answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if on_status is not None:
                on_status(job)
            if job_state(job) in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(0, "timeout", f"job {job_id} still {job_state(job)} after {timeout}s")
            self._sleep(interval)

    def iter_results(self, job_id: str, fmt: str = "csv", kind: str = "results") -> Iterator[bytes]:
        """Stream the job's results (or `kind="errors"`) as raw bytes in the given format."""
        response = self.request("GET", f"/v1/jobs/{job_id}/{kind}", params={"format": fmt}, stream=True)
        with response:
            yield from response.iter_content(DOWNLOAD_BLOCK_BYTES)

    def download(self, job_id: str, out: IO[bytes], fmt: str = "csv", on_write: Progress | None = None,
                 kind: str = "results") -> int:
        """Write the job's results (or errors) to `out` as they arrive; returns the number of bytes written."""
        written = 0
        for block in self.iter_results(job_id, fmt, kind):
            out.write(block)
            written += len(block)
            if on_write is not None:
                on_write(len(block))
        return written


@contextmanager
def _as_csv_file(source: Any) -> Iterator[Path]:
    """A DataFrame or Arrow table written to a temporary CSV file (deleted afterwards), so that an upload is
    streamed from disk and can be sent again on a retry without a second copy in memory."""
    with tempfile.TemporaryDirectory(prefix="predictq-upload-") as folder:
        path = Path(folder) / "rows.csv"
        if hasattr(source, "to_csv"):
            source.to_csv(path, index=False)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(source, str(path))
        yield path


__all__ = ["Client", "Job", "content_type_for", "format_for"]
