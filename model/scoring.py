"""The Python scoring API: `load_scorer(path)` and `Scorer.score_frame` / `Scorer.score_records`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit

from model.artifact import Artifact, load_artifact
from model.errors import RowError
from model.pipeline import Frame, build_pipeline
from model.profile import TrainingProfile, profile_of
from model.schema import ROW_COLUMN

OUTCOME, PHAT = "business_outcome", "phat"
_BYTES = pa.binary()


@dataclass(frozen=True)
class ScoreResult:
    """Scores of the valid rows of one batch, in input order, and the errors of the others."""

    rows: np.ndarray
    phat: np.ndarray
    business_outcome: np.ndarray
    inputs: np.ndarray  # the model inputs as fed to the GLM, columns in `feature_names` (sorted) order
    feature_names: tuple[str, ...]
    errors: list[RowError] = field(default_factory=list)
    # The scored rows' cleaned raw inputs before imputation (NaN missing, categoricals as level codes), columns
    # in `Scorer.input_columns` order: what a data-quality summary measures.
    cleaned: np.ndarray | None = None

    @property
    def output_columns(self) -> list[str]:
        """`business_outcome`, `phat` and the model inputs, in Python-sorted order."""
        return sorted([OUTCOME, PHAT, *self.feature_names])

    def _columns(self) -> dict[str, np.ndarray]:
        """Every output column by name, in output order."""
        named = {OUTCOME: self.business_outcome, PHAT: self.phat}
        named |= {name: self.inputs[:, j] for j, name in enumerate(self.feature_names)}
        return {name: named[name] for name in self.output_columns}

    @cached_property
    def outputs(self) -> pd.DataFrame:
        """One row per scored input row, indexed by its row number, columns in sorted order."""
        return pd.DataFrame(self._columns(), index=pd.Index(self.rows, name=ROW_COLUMN))

    def to_arrow(self) -> pa.Table:
        """The outputs as a pyarrow Table with a leading int64 `row` column."""
        columns = {ROW_COLUMN: self.rows, **self._columns()}
        return pa.table({name: pa.array(values) for name, values in columns.items()})

    def to_records(self, include_row: bool = False) -> list[dict[str, Any]]:
        """Sorted-key dicts of plain Python ints and floats, in input order (orjson-ready)."""
        columns = self._columns()
        if include_row:
            columns = dict(sorted({ROW_COLUMN: self.rows, **columns}.items()))
        # One list per column (ints stay ints), then one C-level dict(zip(...)) per row: no Python loop body.
        values = [np.ascontiguousarray(column).tolist() for column in columns.values()]
        return list(map(dict, map(zip, repeat(list(columns)), zip(*values, strict=True))))


    def to_json(self) -> bytes:
        """The records of `to_records()` as one JSON array, byte for byte what orjson writes for them.

        Built column by column: orjson writes each column's numbers (shortest round-trip text, integral floats
        with '.0'), pyarrow splits them and joins each row's `"key":value` pieces, so no per-row dict is made.
        """
        if not len(self.rows):
            return b"[]"
        pieces: list[pa.Scalar | pa.Array] = []
        for i, (name, column) in enumerate(self._columns().items()):
            numbers = orjson.dumps(np.ascontiguousarray(column), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
            key = (b"{" if i == 0 else b",") + orjson.dumps(name) + b":"
            pieces += [pa.scalar(key, _BYTES), pc.split_pattern(pa.array([numbers], _BYTES), b",").flatten()]
        pieces.append(pa.scalar(b"},", _BYTES))
        objects = pc.binary_join_element_wise(*pieces, pa.scalar(b"", _BYTES))
        offsets = np.frombuffer(objects.buffers()[1], dtype=np.int32)[: len(objects) + 1]
        return b"[" + memoryview(objects.buffers()[2])[offsets[0] : offsets[-1] - 1] + b"]"  # drop the last comma


class Scorer:
    """A loaded model: cleans, encodes and scores batches with the one Pipeline built from its artifact."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.pipeline = build_pipeline(artifact.params)
        self._clean = self.pipeline.named_steps["clean"]
        self._transforms = [step for _, step in self.pipeline.steps[1:-1]]
        self._glm = self.pipeline.named_steps["glm"]
        features = artifact.params.features
        self.feature_names = artifact.params.output_features
        self._order = np.array([features.index(name) for name in self.feature_names], dtype=np.intp)

    @property
    def version(self) -> str:
        """The artifact's version id."""
        return self.artifact.version

    @property
    def sha256(self) -> str:
        """The sha256 of the artifact's parameters."""
        return self.artifact.sha256

    @property
    def cutoff(self) -> float:
        """phat at or above which business_outcome is 1."""
        return self.artifact.params.cutoff

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The raw columns the model reads."""
        return self.artifact.params.required_columns

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The columns of `ScoreResult.cleaned`: the numeric inputs, then the categorical ones."""
        params = self.artifact.params
        return (*params.numeric_columns, *params.categorical_levels)

    @cached_property
    def profile(self) -> TrainingProfile:
        """The model's training figures, for data-quality comparisons."""
        return profile_of(self.artifact)

    @property
    def output_columns(self) -> list[str]:
        """Output column names, Python-sorted."""
        return sorted([OUTCOME, PHAT, *self.feature_names])

    def score_frame(self, frame: Frame) -> ScoreResult:
        """Score a DataFrame, pyarrow Table or column mapping; an int `row` column numbers the rows."""
        names = frame.column_names if isinstance(frame, pa.Table) else list(frame.keys())
        n = frame.num_rows if isinstance(frame, pa.Table) else len(frame[names[0]]) if names else 0
        rows = (
            np.asarray(frame[ROW_COLUMN], dtype=np.int64) if ROW_COLUMN in names else np.arange(n, dtype=np.int64)
        )
        return self._score(frame, rows, [])

    def score_records(self, records: Sequence[Any]) -> ScoreResult:
        """Score JSON-like records; a record that is not an object is a row error, absent keys are missing."""
        if set(map(type, records)) <= {dict}:  # the usual batch: plain JSON objects (a C-level pass over types)
            return self._score(_columns_of(records, self.required_columns), np.arange(len(records)), [])
        is_object = np.fromiter((isinstance(r, Mapping) for r in records), dtype=bool, count=len(records))
        positions = np.flatnonzero(is_object)
        errors = [RowError(int(i), None, "record is not an object") for i in np.flatnonzero(~is_object)]
        usable = [records[i] for i in positions]
        return self._score(_columns_of(usable, self.required_columns), positions.astype(np.int64), errors)

    def _score(self, frame: Frame, rows: np.ndarray, errors: list[RowError]) -> ScoreResult:
        """Clean, transform the valid rows, apply the GLM and the cutoff."""
        batch = self._clean.clean(frame, rows)
        X = cleaned = batch.values[batch.valid] if batch.errors else batch.values
        with np.errstate(over="ignore", invalid="ignore"):  # extreme rows are caught below, as row errors
            for step in self._transforms:
                X = step.transform(X)
            phat = expit(self._glm.decision_function(X))
        valid_rows = rows[batch.valid] if batch.errors else rows
        if not np.isfinite(phat).all():
            # Finite inputs so extreme (|x| near 1e308) that the linear predictor is inf - inf.
            finite = np.isfinite(phat)
            errors = [*errors, *(RowError(int(r), None, "values too extreme to score") for r in valid_rows[~finite])]
            phat, X, valid_rows, cleaned = phat[finite], X[finite], valid_rows[finite], cleaned[finite]
        all_errors = sorted([*errors, *batch.errors], key=lambda e: e.row) if errors else batch.errors
        return ScoreResult(
            rows=valid_rows,
            phat=phat,
            business_outcome=(phat >= self.cutoff).astype(np.int64),
            inputs=X[:, self._order],
            feature_names=self.feature_names,
            errors=all_errors,
            cleaned=cleaned,
        )


def _columns_of(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """One list per column of the records' values, None where a record lacks the key."""
    try:
        return {name: list(map(itemgetter(name), records)) for name in names}  # C-level lookups, no loop body
    except KeyError:
        return {name: [record.get(name) for record in records] for name in names}


def score_chunk(scorer: Scorer, inputs: pa.Table, passthrough: str | None = None) -> tuple[ScoreResult, pa.Table]:
    """Score a chunk's readable rows (numbered by their `row` column): the result, and the results table of
    `row`, the outputs and the passthrough column (each scored row's own value), columns sorted by name."""
    scored = scorer.score_frame(inputs)
    table = scored.to_arrow()
    if passthrough and passthrough in inputs.column_names:
        # Input rows are ascending and unique, so positions of the scored rows come from a binary search.
        positions = np.searchsorted(inputs[ROW_COLUMN].to_numpy(), table[ROW_COLUMN].to_numpy())
        table = table.append_column(passthrough, inputs[passthrough].take(pa.array(positions)))
    return scored, table.select(sorted(table.column_names))


def load_scorer(path: str | Path | None = None, expected_sha256: str = "") -> Scorer:
    """The Scorer of a verified artifact; None or '' loads the approved model shipped in model/data.

    A non-empty `expected_sha256` refuses any other parameters (ArtifactError).
    """
    return Scorer(load_artifact(path, expected_sha256))
