"""A job on a predictq server, as the client sees it: its state, waiting for it, and its results."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.formats import format_for_path
from core.states import CLOSED_STATES

if TYPE_CHECKING:
    from predictq.client import Client

# Job states after which nothing changes any more; anything else is still moving.
TERMINAL_STATES = CLOSED_STATES


def format_for(path: Path | None, default: str = "csv") -> str:
    """The results format implied by an output path's extension (csv, ndjson, json or parquet)."""
    if path is None:
        return default
    return format_for_path(path) or default


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
