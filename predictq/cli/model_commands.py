"""`predictq` subcommands: model (train, synth, score)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
import pyarrow as pa

from core.settings import Settings, SettingsError
from model.errors import PredictqError, RowError

_MODEL_HELP = "Model artifact (file or directory) [default: $PREDICTQ_MODEL_PATH, else the approved model]."


class _CountingReader:
    """A binary file that reports how many bytes have been read, for the progress bar."""

    def __init__(self, source: BinaryIO, on_read: Any) -> None:
        self.source = source
        self.on_read = on_read

    def read(self, n: int = -1, /) -> bytes:
        data = self.source.read(n)
        self.on_read(len(data))
        return data


def _model_path(model: str | None) -> str:
    """The artifact to load: the option, else PREDICTQ_MODEL_PATH, else '' (the approved model)."""
    if model is not None:
        return model
    try:
        return Settings.from_env().model_path
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.argument("train_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model artifact (model.json) into.")
def train(train_csv: Path, out_dir: Path) -> None:
    """Fit the notebook's model on TRAIN_CSV (x0..x99, y) and write a versioned artifact."""
    from model.training import train_file

    try:
        result, artifact = train_file(train_csv, out_dir)
    except (ValueError, PredictqError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"artifact  {out_dir / 'model.json'}  version {artifact.version}  sha256 {artifact.sha256}")
    click.echo("AUC       " + "  ".join(f"{part} {auc:.4f}" for part, auc in result.auc.items()))
    click.echo(f"cutoff    {result.params.cutoff:.6f} (75th percentile of the training predictions)")
    click.echo("selected  " + ", ".join(result.params.features))
    click.echo("lift table (20 bins of phat, highest first):")
    click.echo(result.lift.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


@click.command()
@click.option("--rows", type=click.IntRange(min=0), required=True, help="Number of rows to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same file.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .csv, .ndjson (.jsonl) or .json.")
def synth(rows: int, seed: int, output: Path) -> None:
    """Write synthetic rows of the model's input schema, labelled by the approved model, streaming."""
    from model.synth import write_synth

    try:
        written = write_synth(output, rows, seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {written} rows to {output}", err=True)


def _scored_tables(chunks: Iterator[Any], scorer: Any, passthrough: str | None,
                   error_sink: BinaryIO | None, counts: dict[str, int]) -> Iterator[pa.Table]:
    """Score each chunk; yield its result table, stream its row errors to the sink, count both."""
    from model.scoring import score_chunk

    for chunk in chunks:
        result, table = score_chunk(scorer, chunk.table, passthrough)
        errors: list[RowError] = sorted([*chunk.errors, *result.errors], key=lambda e: e.row)
        counts["scored"] += table.num_rows
        counts["errors"] += len(errors)
        counts["failed"] += len({e.row for e in errors})
        if error_sink is not None and errors:
            error_sink.write(b"".join(orjson.dumps(e.as_dict()) + b"\n" for e in errors))
        elif errors and counts["errors"] == len(errors):
            first = errors[0]
            click.echo(f"row {first.row}, column {first.column}: {first.message}", err=True)
        yield table


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Results file: .csv, .ndjson (.jsonl) or .json (format by extension).")
@click.option("--model", default=None, help=_MODEL_HELP)
@click.option("--errors", "errors_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write row errors here as NDJSON (row, column, message) [default: count on stderr].")
@click.option("--passthrough", default=None, help="An input column to copy into the results (e.g. an id).")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk [default: $PREDICTQ_CHUNK_ROWS, 25000].")
def score(input_path: Path, output: Path, model: str | None, errors_path: Path | None, passthrough: str | None,
          chunk_rows: int | None) -> None:
    """Score INPUT (.csv, .ndjson, .json) in-process, streaming in chunks, into OUTPUT."""
    from model.prefetch import read_ahead
    from model.readers import format_from_path, iter_chunks
    from model.scoring import load_scorer
    from model.writers import write_file

    try:
        settings = Settings.from_env()
        scorer = load_scorer(_model_path(model))
        fmt_in, _ = format_from_path(input_path), format_from_path(output)
    except (PredictqError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None
    counts = {"scored": 0, "failed": 0, "errors": 0}
    show_bar = sys.stderr.isatty()
    bar_context = click.progressbar(length=input_path.stat().st_size, label="scoring", file=sys.stderr,
                                    width=30) if show_bar else nullcontext(None)
    with input_path.open("rb") as raw, bar_context as bar, (
        errors_path.open("wb") if errors_path else nullcontext(None)
    ) as error_sink:
        stream = _CountingReader(raw, bar.update) if bar is not None else raw
        # The next chunk is parsed on a thread while this one is scored and written (both release the GIL).
        chunks = read_ahead(iter_chunks(stream, fmt_in, columns=list(scorer.required_columns),
                                        chunk_rows=chunk_rows or settings.chunk_rows, passthrough=passthrough))
        try:
            write_file(_scored_tables(chunks, scorer, passthrough, error_sink, counts), output)
        except PredictqError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"scored {counts['scored']} rows with {scorer.version}; "
               f"{counts['failed']} rows failed ({counts['errors']} row errors)"
               + (f" (see {errors_path})" if errors_path and counts["errors"] else ""), err=True)


COMMANDS: list[click.Command] = [train, synth, score]
