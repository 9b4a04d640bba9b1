"""A job's score and data-quality summary: measured once per chunk, merged by the chunk's commit, assembled on read.

The worker measures each chunk (`chunk_counters`): a 20-bin histogram of phat, the rows at or above the cutoff,
per model input the missing count, the sum and sum of squares of the observed numeric values and the count of
each categorical level, and the rows that failed by error code and by column. The commit script adds these to
one Redis hash per job in the same atomic step that commits the chunk's results, past the exactly-once guard,
so a duplicated or late task adds nothing. `assemble` turns the hash into the figures clients read, beside
the model's training profile, with plain-language drift warnings.

Precision: every count is an exact integer (HINCRBY). Sums are float64 per chunk, added across chunks by
HINCRBYFLOAT (a long double in Redis, stored as text to 17 decimals), so means and standard deviations agree
with a one-pass float64 computation over the same rows to about 1e-12 relative, whatever the commit order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.profile import TrainingProfile

BINS = 20
EDGES = np.linspace(0.0, 1.0, BINS + 1)
RECORD = "_record"  # the "column" of an error about a whole record (no column named)

# Stable codes of row errors, by the start of the message each kind of error has (first match wins). An error
# about a whole record that matches none is `unreadable_record`; any other is `invalid_value`.
ROW_ERROR_CODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chunk_failed", ("chunk failed after ", "the chunk's staged input was lost")),
    ("unknown_level", ("unknown level ", "expected one of ")),
    ("not_finite", ("not a finite number", "values too extreme")),
    ("not_a_number", ("cannot read ", "expected a number", "a boolean where", "an object where", "a list where")),
)
RECORD_CODE, VALUE_CODE = "unreadable_record", "invalid_value"
ERROR_CODES = (*(code for code, _ in ROW_ERROR_CODES), RECORD_CODE, VALUE_CODE)


@dataclass(frozen=True)
class ChunkCounters:
    """What one chunk adds to its job's summary hash: exact integer counts and float sums."""

    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def as_args(self) -> list[Any]:
        """The commit script's trailing arguments: how many count pairs, the count pairs, then the sum pairs."""
        pairs: list[Any] = [len(self.counts)]
        for name, value in self.counts.items():
            pairs += [name, int(value)]
        for name, total in self.sums.items():
            pairs += [name, repr(float(total))]
        return pairs


def phat_field(bin_index: int) -> str:
    """The summary hash field counting the rows of one phat bin."""
    return f"phat:{bin_index:02d}"


def error_codes(errors: pa.Table) -> np.ndarray:
    """The stable code of each row error (vectorized over the messages)."""
    messages = errors["message"]
    conditions = [
        pc.fill_null(reduce(pc.or_, (pc.starts_with(messages, p) for p in prefixes)), False).to_numpy(
            zero_copy_only=False)
        for _, prefixes in ROW_ERROR_CODES
    ]
    whole_record = pc.is_null(errors["column"]).to_numpy(zero_copy_only=False)
    fallback = np.where(whole_record, RECORD_CODE, VALUE_CODE)
    return np.select(conditions, [code for code, _ in ROW_ERROR_CODES], fallback)


def _distinct_row_counts(rows: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, int]:
    """How many distinct rows carry each label (a row with two errors of one label counts once)."""
    names, inverse = np.unique(labels, return_inverse=True)
    pairs = np.unique(np.stack([rows, inverse.astype(np.int64)]), axis=1)
    counts = np.bincount(pairs[1], minlength=len(names))
    return {f"{prefix}{name}": int(n) for name, n in zip(names, counts, strict=True) if n}


def error_counters(errors: pa.Table) -> dict[str, int]:
    """Rows failed by error code and by column."""
    if not errors.num_rows:
        return {}
    rows = errors["row"].to_numpy()
    columns = pc.fill_null(errors["column"], RECORD).to_numpy(zero_copy_only=False).astype(str)
    return {**_distinct_row_counts(rows, error_codes(errors), "failed:"),
            **_distinct_row_counts(rows, columns, "failed_column:")}


def score_counters(phat: np.ndarray, outcome: np.ndarray, cleaned: np.ndarray, columns: Sequence[str],
                   levels: Mapping[str, Sequence[str]]) -> ChunkCounters:
    """Histogram, outcome count and input figures of one chunk's scored rows (`cleaned` as ScoreResult has it)."""
    counts: dict[str, int] = {"rows": len(phat), "outcome:1": int(np.count_nonzero(outcome))}
    hist, _ = np.histogram(phat, bins=EDGES)
    counts |= {phat_field(i): int(n) for i, n in enumerate(hist) if n}
    sums: dict[str, float] = {}
    for j, column in enumerate(columns):
        values = cleaned[:, j]
        missing = np.isnan(values)
        counts[f"missing:{column}"] = int(np.count_nonzero(missing))
        observed = values[~missing]
        if column in levels:
            per_level = np.bincount(observed.astype(np.intp), minlength=len(levels[column]))
            counts |= {f"level:{column}:{lv}": int(n) for lv, n in zip(levels[column], per_level, strict=True) if n}
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            total, squares = float(np.sum(observed)), float(np.sum(observed * observed))
        if math.isfinite(total) and math.isfinite(squares):
            sums |= {f"sum:{column}": total, f"sumsq:{column}": squares}
        else:
            counts[f"overflow:{column}"] = 1  # values too large to sum in float64: no mean/sd for this job
    return ChunkCounters(counts, sums)


def chunk_counters(scored: Any | None, errors: pa.Table, columns: Sequence[str],
                   levels: Mapping[str, Sequence[str]]) -> ChunkCounters:
    """Everything one chunk adds to its job's summary; `scored` is its ScoreResult (None: nothing scored)."""
    if scored is None or scored.cleaned is None or not len(scored.phat):
        return ChunkCounters(error_counters(errors))
    counters = score_counters(scored.phat, scored.business_outcome, scored.cleaned, columns, levels)
    counters.counts.update(error_counters(errors))
    return counters


@dataclass(frozen=True)
class DriftThresholds:
    """How far from training a job's figures may be before the summary warns."""

    missing_rate: float = 0.05
    mean_shift: float = 0.25
    level_share: float = 0.05
    outcome_share: float = 0.10
    min_rows: int = 500

    @classmethod
    def from_settings(cls, settings: Any) -> DriftThresholds:
        """The thresholds configured in `core.settings.Settings`."""
        return cls(settings.drift_missing_rate, settings.drift_mean_shift, settings.drift_level_share,
                   settings.drift_outcome_share, settings.drift_min_rows)


def _int(fields: Mapping[str, str], name: str) -> int:
    return int(fields.get(name, "0"))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


@dataclass
class _Assembly:
    fields: Mapping[str, str]
    profile: TrainingProfile
    thresholds: DriftThresholds
    rows: int
    drift: list[dict[str, Any]] = field(default_factory=list)

    def warn(self, kind: str, column: str | None, value: float, training: float, threshold: float,
             message: str) -> None:
        self.drift.append({"kind": kind, "column": column, "value": value, "training": training,
                           "threshold": threshold, "message": message})

    @property
    def enough_rows(self) -> bool:
        return self.rows >= self.thresholds.min_rows

    def missing(self, column: str, training_rate: float | None) -> dict[str, Any]:
        missing = _int(self.fields, f"missing:{column}")
        rate = _ratio(missing, self.rows)
        limit = self.thresholds.missing_rate
        if rate is not None and training_rate is not None and self.enough_rows and rate - training_rate > limit:
            self.warn("missing_rate", column, rate, training_rate, limit,
                      f"{column} is missing in {_percent(rate)} of rows, against {_percent(training_rate)} in "
                      f"training: missing values are filled with the training mean, which pulls scores toward it")
        return {"missing": missing, "missing_rate": rate, "training_missing_rate": training_rate}

    def numeric(self, column: str) -> dict[str, Any]:
        train = self.profile.numeric[column]
        out = {"column": column, "kind": "numeric", **self.missing(column, train.missing_rate),
               "mean": None, "sd": None, "training_mean": train.mean, "training_sd": train.sd, "mean_shift": None}
        observed = self.rows - out["missing"]
        if observed and f"overflow:{column}" not in self.fields:
            total = float(self.fields.get(f"sum:{column}", "0"))
            squares = float(self.fields.get(f"sumsq:{column}", "0"))
            mean = total / observed
            out |= {"mean": mean, "sd": math.sqrt(max(squares / observed - mean * mean, 0.0)),
                    "mean_shift": (mean - train.mean) / train.sd}
            shift, limit = out["mean_shift"], self.thresholds.mean_shift
            if self.enough_rows and abs(shift) > limit:
                self.warn("mean_shift", column, shift, 0.0, limit,
                          f"the mean of {column} is {mean:.4g}, {abs(shift):.2f} training standard deviations "
                          f"{'above' if shift > 0 else 'below'} its training mean {train.mean:.4g}")
        return out

    def categorical(self, column: str, levels: Sequence[str]) -> dict[str, Any]:
        train = self.profile.categorical[column]
        out = {"column": column, "kind": "categorical", **self.missing(column, train.missing_rate)}
        present = self.rows - out["missing"]
        rows, far = [], []
        limit = self.thresholds.level_share
        for level in levels:
            count = _int(self.fields, f"level:{column}:{level}")
            share = _ratio(count, present)
            trained = train.shares.get(level) if train.shares else None
            if share is not None and trained is not None and abs(share - trained) > limit:
                far.append((abs(share - trained), level, share, trained))
            rows.append({"level": level, "count": count, "share": share, "training_share": trained})
        if far and self.enough_rows:
            _, level, share, trained = max(far)
            listed = "; ".join(f"{lv!r} {_percent(s)} against {_percent(t)}" for _, lv, s, t in sorted(far)[::-1])
            self.warn("level_share", column, share, trained, limit,
                      f"the levels of {column} are not spread as in training: {listed}")
        return {**out, "levels": rows}

    def outcome(self, cutoff: float) -> dict[str, Any]:
        count = _int(self.fields, "outcome:1")
        share, trained, limit = _ratio(count, self.rows), self.profile.outcome_share, self.thresholds.outcome_share
        if share is not None and self.enough_rows and abs(share - trained) > limit:
            self.warn("outcome_share", None, share, trained, limit,
                      f"{_percent(share)} of rows have business_outcome 1; the cutoff {cutoff} was set so that "
                      f"{_percent(trained)} of training rows do")
        return {"count": count, "share": share, "cutoff": cutoff, "training_share": trained}

    def failed(self, rows_failed: int) -> dict[str, Any]:
        by_code = {f.removeprefix("failed:"): int(v) for f, v in self.fields.items() if f.startswith("failed:")}
        by_column = {f.removeprefix("failed_column:"): int(v) for f, v in self.fields.items()
                     if f.startswith("failed_column:")}
        if rows_failed:
            worst = max(by_code.items(), key=lambda item: item[1]) if by_code else ("unknown", rows_failed)
            self.warn("rows_failed", None, _ratio(rows_failed, rows_failed + self.rows) or 0.0, 0.0, 0.0,
                      f"{rows_failed} rows could not be scored (most often: {worst[0]}, {worst[1]} rows); "
                      "see the job's row errors")
        return {"total": rows_failed, "by_code": dict(sorted(by_code.items())),
                "by_column": dict(sorted(by_column.items()))}


def assemble(fields: Mapping[str, str], *, rows_failed: int, cutoff: float, numeric: Sequence[str],
             levels: Mapping[str, Sequence[str]], order: Sequence[str], profile: TrainingProfile,
             thresholds: DriftThresholds) -> dict[str, Any]:
    """The summary clients read, from the merged hash `fields` and the model's training profile.

    `numeric` and `levels` name the model's inputs, `order` the order to list them in (raw column order).
    """
    rows = _int(fields, "rows")
    parts = _Assembly(fields, profile, thresholds, rows)
    counts = [_int(fields, phat_field(i)) for i in range(BINS)]
    outcome = parts.outcome(cutoff)
    inputs = [parts.numeric(c) for c in numeric] + [parts.categorical(c, lv) for c, lv in levels.items()]
    failed = parts.failed(rows_failed)
    return {
        "rows_scored": rows,
        "phat_histogram": {"edges": [round(float(e), 10) for e in EDGES], "counts": counts},
        "business_outcome_1": outcome,
        "inputs": sorted(inputs, key=lambda item: list(order).index(item["column"])),
        "rows_failed": failed,
        "drift": parts.drift,
        "drift_thresholds": {"missing_rate": thresholds.missing_rate, "mean_shift": thresholds.mean_shift,
                             "level_share": thresholds.level_share, "outcome_share": thresholds.outcome_share,
                             "min_rows": thresholds.min_rows},
        "training_provenance": dict(profile.provenance),
    }
