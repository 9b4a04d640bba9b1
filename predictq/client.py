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
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from core.formats import FORMATS, extensions, format_for_path
from core.states import CLOSED_STATES, JobState
from predictq.errors import ApiError, ConnectionFailed, JobFailed, WaitTimeout, error_class

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DEFAULT_URL = "http://127.0.0.1:1313"
UPLOAD_BLOCK_BYTES = 256 * 1024
DOWNLOAD_BLOCK_BYTES = 256 * 1024
# Job states after which nothing changes any more; anything else is still moving.
TERMINAL_STATES = CLOSED_STATES
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# The server's default PREDICTQ_MAX_SYNC_ROWS; a smaller server limit is learnt from its 413 answer.
DEFAULT_SYNC_ROWS = 10_000
# `Client.score` sends frames up to this many rows through /predict (in batches), larger ones as a job.
DEFAULT_JOB_THRESHOLD = 50_000

Progress = Callable[[int], None]


class _LargeBlocks(HTTPAdapter):
    """Sends request bodies in UPLOAD_BLOCK_BYTES blocks: urllib3 reads 16 KB at a time by default, which makes
    a 1 GB upload 65,000 reads and sends (about 0.5 s of client time on a 2-core machine)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = UPLOAD_BLOCK_BYTES
        super().init_poolmanager(*args, **kwargs)


def _session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _LargeBlocks())
    session.mount("https://", _LargeBlocks())
    return session


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


def format_for(path: Path | None, default: str = "csv") -> str:
    """The results format implied by an output path's extension (csv, ndjson, json or parquet)."""
    if path is None:
        return default
    return format_for_path(path) or default


def check_received(job: Mapping[str, Any], size: int, sha256: str) -> None:
    """Raise when the server recorded another body than the one sent (it also checks the Content-Digest sent
    with it; this guards against a server or proxy that ignores the header)."""
    upload = job.get("upload") or {}
    got = (upload.get("bytes_received"), upload.get("sha256"))
    if got != (None, None) and got != (size, sha256):
        raise ApiError(0, "upload_mismatch", f"job {job.get('id')} recorded {got[0]} bytes with sha256 {got[1]}, "
                       f"but {size} bytes with sha256 {sha256} were sent")


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


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header given in seconds (an HTTP date is not used by predictq)."""
    raw = response.headers.get("Retry-After")
    try:
        return max(float(raw), 0.0) if raw is not None else None
    except ValueError:
        return None


def _error_from(response: requests.Response) -> ApiError:
    """The typed exception for an error answer in the API's `{"error": {"code", "message", "details"}}` shape."""
    request_id = response.headers.get("X-Request-Id")
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200] or str(response.reason), {}
    cls = error_class(response.status_code)
    return cls(response.status_code, code, message, details, request_id or details.get("request_id"),
               _retry_after(response))


def _retryable(error: ApiError) -> bool:
    return error.status in RETRY_STATUSES or (error.status == 409 and error.code == "idempotency_key_in_use")


class Client:
    """A predictq server at `url` (default PREDICTQ_URL, else http://127.0.0.1:1313), called with `api_key`
    (default PREDICTQ_API_KEY).

    `timeout` bounds each connect and each read (seconds); retries stop after `max_attempts` attempts or
    `max_retry_seconds` of waiting, whichever comes first. `score` sends frames of up to `job_threshold`
    rows to /predict in batches of `sync_rows` (the server's PREDICTQ_MAX_SYNC_ROWS), larger ones as a job.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 max_attempts: int = 5, max_retry_seconds: float = 120.0, backoff: float = 0.5,
                 sync_rows: int = DEFAULT_SYNC_ROWS, job_threshold: int = DEFAULT_JOB_THRESHOLD) -> None:
        self.base_url = (url or os.environ.get("PREDICTQ_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("PREDICTQ_API_KEY") or None
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_retry_seconds = max_retry_seconds
        self.backoff = backoff
        self.sync_rows = sync_rows
        self.job_threshold = job_threshold
        self._http = _session()
        self._sleep: Callable[[float], None] = time.sleep

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

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- transport -------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, retry: bool | None = None,
                body: Callable[[ExitStack], Any] | None = None, **kwargs: Any) -> requests.Response:
        """Send a request and return its 2xx answer, retrying when `retry` (default: GET and DELETE).

        `body(stack)` builds the request body afresh for each attempt (files it opens go on `stack`).
        Raises the `predictq.errors` class of the last failure.
        """
        retry = method in {"GET", "HEAD", "DELETE"} if retry is None else retry
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        started = time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            try:
                with ExitStack() as stack:
                    if body is not None:
                        kwargs["data"] = body(stack)
                    response = self._http.request(method, f"{self.base_url}{path}", headers=headers,
                                                  timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: ApiError = ConnectionFailed(
                    0, "unreachable", f"cannot reach {self.base_url}: {exc.__class__.__name__}")
            else:
                if response.status_code < 400:
                    return response
                error = _error_from(response)
                response.close()
                if not _retryable(error):
                    raise error
            if not retry or attempt == self.max_attempts:
                raise error
            delay = self._delay(attempt, error.retry_after)
            if time.monotonic() - started + delay > self.max_retry_seconds:
                raise error
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gave one, else exponential backoff with full jitter."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0, self.backoff * 2 ** (attempt - 1))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

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


class Job:
    """A job on the server: `id`, `state` and the last job object seen (`data`)."""

    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> str:
        """The job id."""
        return str(self.data["id"])

    @property
    def state(self) -> str:
        """queued, running, succeeded, failed or cancelled (as of the last refresh)."""
        return job_state(self.data)

    @property
    def done(self) -> bool:
        """Whether the job had reached a final state at the last refresh."""
        return self.state in TERMINAL_STATES

    def __repr__(self) -> str:
        return f"Job({self.id!r}, state={self.state!r}, rows_done={self.data.get('rows_done')})"

    def refresh(self) -> Job:
        """Fetch the job's current state."""
        self.data = self.client.status(self.id)
        return self

    def wait(self, progress: bool = False, interval: float = 0.5, timeout: float | None = None) -> Job:
        """Poll until the job ends (succeeded, failed or cancelled); `progress` draws a tqdm bar of rows done
        (in a notebook, its widget). Raises WaitTimeout after `timeout` seconds."""
        if not progress:
            self.data = self.client.wait(self.id, interval=interval, timeout=timeout)
            return self
        from tqdm.auto import tqdm

        with tqdm(total=self.data.get("rows_total") or None, unit="rows", desc=self.id, dynamic_ncols=True) as bar:
            def on_status(job: dict[str, Any]) -> None:
                total = job.get("rows_total") or 0
                if total and bar.total != total:
                    bar.total = total
                bar.update(max(int(job.get("rows_done") or 0) - bar.n, 0))
                bar.set_postfix_str(job_state(job), refresh=False)

            self.data = self.client.wait(self.id, on_status=on_status, interval=interval, timeout=timeout)
        return self

    def results(self, as_: str = "pandas", path: str | Path | None = None,
                format: str | None = None) -> Any:
        """The scored rows in input order, each with its 0-based input `row`.

        `as_="pandas"` (default) gives a DataFrame, `as_="arrow"` a pyarrow Table. With `path`, the rows are
        streamed to that file instead (format from `format`, else the extension, else CSV; written whole or
        not at all) and the path is returned. A job still running gives the rows scored so far.
        """
        if path is not None:
            return self._save("results", Path(path), format)
        return self._table("results", as_)

    def errors(self, as_: str = "pandas") -> Any:
        """Row errors (row, column, message), in input order, as pandas or (`as_="arrow"`) pyarrow."""
        return self._table("errors", as_)

    def summary(self) -> dict[str, Any]:
        """The job's phat histogram, outcome share, input data quality beside training and drift warnings
        (GET /v1/jobs/{id}/summary)."""
        return self.client.summary(self.id)

    def cancel(self) -> Job:
        """Cancel the job (a finished job stays as it ended); returns it as it is afterwards."""
        self.data = self.client.cancel(self.id)
        return self

    def _save(self, kind: str, path: Path, fmt: str | None) -> Path:
        partial = path.with_name(f".{path.name}.part")
        try:
            with partial.open("wb") as sink:
                self.client.download(self.id, sink, fmt or format_for(path), kind=kind)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    def _table(self, kind: str, as_: str) -> Any:
        """Download as NDJSON (exact numbers, text never altered) into a temporary file and read it."""
        import pyarrow as pa
        import pyarrow.json as pajson

        if as_ not in {"pandas", "arrow"}:
            raise ValueError("as_ must be 'pandas' or 'arrow'")
        passthrough = self.data.get("passthrough") if kind == "results" else None
        error_schema = pa.schema([("row", pa.int64()), ("column", pa.string()), ("message", pa.string())])
        with tempfile.TemporaryFile() as spool:
            self.client.download(self.id, spool, "ndjson", kind=kind)
            spool.seek(0)
            if not spool.read(1):
                table = (error_schema if kind == "errors" else pa.schema([("row", pa.int64())])).empty_table()
            elif passthrough:
                return self._mixed_ids(spool, passthrough, as_)
            else:
                spool.seek(0)
                table = pajson.read_json(spool, parse_options=pajson.ParseOptions(
                    explicit_schema=pa.schema([("row", pa.int64())]), unexpected_field_behavior="infer"))
        return table if as_ == "arrow" else table.to_pandas()

    @staticmethod
    def _mixed_ids(spool: IO[bytes], passthrough: str, as_: str) -> Any:
        """Results with an id column, which is an integer in some chunks and text in others: pandas keeps each
        id as it came (an object column); Arrow gets them all as text."""
        import pandas as pd
        import pyarrow as pa

        spool.seek(0)
        frame = pd.read_json(spool, lines=True, dtype={passthrough: object}, precise_float=True)
        if as_ == "pandas":
            return frame
        return pa.Table.from_pandas(frame.astype({passthrough: str}), preserve_index=False)


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


__all__ = ["Client", "Job", "content_type_for", "format_for"]
