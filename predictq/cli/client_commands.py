"""`predictq` subcommands: client (submit, status, results, cancel, summary) against a running server, all
through `predictq.Client` (so they retry and report errors as the library does)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from core.formats import FORMATS
from core.states import JobState
from predictq.client import Client
from predictq.errors import ApiError
from predictq.job import Job, format_for, job_fraction, job_state

PROGRESS_STEPS = 1000

server_options = [
    click.option("--url", envvar="PREDICTQ_URL", default=None, help="Server URL [env PREDICTQ_URL; default local]."),
    click.option("--api-key", envvar="PREDICTQ_API_KEY", default=None, help="API key [env PREDICTQ_API_KEY]."),
]


def with_server(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url and --api-key to a command."""
    for option in reversed(server_options):
        func = option(func)
    return func


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


@contextmanager
def _client_errors() -> Iterator[None]:
    """Report an ApiError as one line on stderr (with the request id) and exit 1 (2 for a missing job)."""
    try:
        yield
    except ApiError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2 if exc.status == 404 else 1) from None


def _upload(client: Client, path: Path) -> Job:
    """Upload with a byte progress bar (click draws bars only when stderr is a terminal)."""
    with click.progressbar(
        length=max(path.stat().st_size, 1), label=f"upload {path.name}", file=sys.stderr, show_pos=False
    ) as bar:
        return client.submit(path, on_upload=bar.update)


def _wait(client: Client, job_id: str, interval: float) -> dict[str, Any]:
    """Poll with a progress bar driven by the job's completed fraction."""
    with click.progressbar(length=PROGRESS_STEPS, label=f"score  {job_id}", file=sys.stderr) as bar:
        shown = 0

        def on_status(job: dict[str, Any]) -> None:
            nonlocal shown
            target = int(job_fraction(job) * PROGRESS_STEPS)
            if target > shown:
                bar.update(target - shown)
                shown = target

        return client.wait(job_id, on_status=on_status, interval=interval)


def _download(client: Client, job_id: str, out: Path, fmt: str) -> int:
    """Stream results into `out` (written to a temporary name, then renamed, so a failure leaves no half file)."""
    partial = out.with_name(f".{out.name}.part")
    try:
        with partial.open("wb") as sink:
            written = client.download(job_id, sink, fmt)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return written


def _download_to(client: Client, job_id: str, out: str, fmt: str | None) -> None:
    """Write results to a path, or to stdout for "-"."""
    if out == "-":
        _stream_to(client, job_id, sys.stdout.buffer, fmt or "csv")
        return
    path = Path(out)
    written = _download(client, job_id, path, fmt or format_for(path))
    click.echo(f"wrote {written} bytes to {path}", err=True)


def _stream_to(client: Client, job_id: str, sink: IO[bytes], fmt: str) -> None:
    client.download(job_id, sink, fmt)
    sink.flush()


format_option = click.option(
    "--format", "fmt", type=click.Choice(list(FORMATS)), default=None,
    help="Results format (default: from the output file's extension, else csv).",
)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to finish, showing progress.")
@click.option("-o", "--output", default=None, help="With --wait: write results here ('-' for stdout).")
@click.option("--poll-interval", default=0.5, show_default=True, type=click.FloatRange(min=0.05), help="Seconds.")
@format_option
@with_server
def submit(
    file: Path, wait_: bool, output: str | None, poll_interval: float, fmt: str | None, url: str | None,
    api_key: str | None,
) -> None:
    """Upload FILE (.csv, .ndjson or .json) as a scoring job; print the job id, or wait and download results."""
    if output and not wait_:
        raise click.UsageError("-o/--output needs --wait")
    client = Client.from_env(url, api_key)
    with _client_errors():
        job_id = _upload(client, file).id
        if not wait_:
            click.echo(job_id)
            return
        click.echo(f"job {job_id} accepted", err=True)
        final = _wait(client, job_id, poll_interval)
        state = job_state(final)
        if state != JobState.SUCCEEDED:
            _echo_json(final)
            click.echo(f"error: job {job_id} ended {state}", err=True)
            raise SystemExit(1)
        click.echo(f"job {job_id} {state}", err=True)
        if output:
            _download_to(client, job_id, output, fmt)
        else:
            _echo_json(final)


@click.command()
@click.argument("job_id")
@with_server
def status(job_id: str, url: str | None, api_key: str | None) -> None:
    """Print JOB_ID's state and progress as JSON."""
    with _client_errors():
        _echo_json(Client.from_env(url, api_key).status(job_id))


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", required=True, help="Write results here ('-' for stdout).")
@format_option
@with_server
def results(job_id: str, output: str, fmt: str | None, url: str | None, api_key: str | None) -> None:
    """Download JOB_ID's results (streamed to the output file)."""
    with _client_errors():
        _download_to(Client.from_env(url, api_key), job_id, output, fmt)


@click.command()
@click.argument("job_id")
@with_server
def cancel(job_id: str, url: str | None, api_key: str | None) -> None:
    """Cancel JOB_ID; queued chunks are dropped and the job ends cancelled."""
    with _client_errors():
        _echo_json(Client.from_env(url, api_key).cancel(job_id))


HISTOGRAM_WIDTH = 40


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def summary_text(summary: dict[str, Any]) -> str:
    """A job summary for a terminal: a text histogram, the outcome share, the inputs beside training, warnings."""
    histogram, outcome = summary["phat_histogram"], summary["business_outcome_1"]
    edges, counts = histogram["edges"], histogram["counts"]
    widest = max(counts, default=0) or 1
    lines = [f"job {summary['job_id']}: {summary['state']}, {summary['rows_scored']:,} rows scored, "
             f"{summary['rows_failed']['total']:,} failed",
             "", f"phat histogram ({len(counts)} bins over [0, 1]; the cutoff is {outcome['cutoff']})"]
    for low, high, count in zip(edges, edges[1:], counts, strict=False):
        bar = "#" * round(HISTOGRAM_WIDTH * count / widest)
        mark = f"  <- cutoff {outcome['cutoff']}" if low <= outcome["cutoff"] < high else ""
        lines.append(f"  {low:.2f}-{high:.2f} {bar:<{HISTOGRAM_WIDTH}} {count:>10,}{mark}")
    lines += ["", f"business_outcome 1: {outcome['count']:,} rows ({_share(outcome['share'])}); the cutoff was set "
              f"for {_share(outcome['training_share'])}", "",
              f"  {'input':<6} {'missing':>8} {'training':>9}  {'mean':>10} {'training':>10} {'shift (sd)':>10}"]
    for item in summary["inputs"]:
        head = f"  {item['column']:<6} {_share(item['missing_rate']):>8} {_share(item['training_missing_rate']):>9}"
        if item["kind"] == "numeric":
            lines.append(f"{head}  {_figure(item['mean']):>10} {_figure(item['training_mean']):>10} "
                         f"{_figure(item['mean_shift']):>10}")
        else:
            levels = ", ".join(f"{lv['level']} {_share(lv['share'])} ({_share(lv['training_share'])})"
                               for lv in item["levels"])
            lines.append(f"{head}  levels: {levels}")
    if summary["rows_failed"]["by_code"]:
        codes = ", ".join(f"{code} {n:,}" for code, n in summary["rows_failed"]["by_code"].items())
        lines += ["", f"rows failed by code: {codes}"]
    lines += ["", "warnings:" if summary["drift"] else "no warnings: this job looks like the training data"]
    lines += [f"  - {warning['message']}" for warning in summary["drift"]]
    return "\n".join(lines)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_server
def summary(job_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Print JOB_ID's phat histogram, outcome share, input data quality beside training and drift warnings."""
    with _client_errors():
        figures = Client.from_env(url, api_key).summary(job_id)
    if as_json:
        _echo_json(figures)
    else:
        click.echo(summary_text(figures))


COMMANDS: list[click.Command] = [submit, status, results, cancel, summary]
