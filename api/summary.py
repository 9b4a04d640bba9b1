"""A job's summary (phat histogram, outcome share, input data quality, drift) and the model's inputs beside
the training figures the summary compares with."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from api.jobs import job_id_or_404
from api.responses import json_response
from api.services import require_tenant, services
from jobs.summary import DriftThresholds, assemble

bp = Blueprint("summary", __name__)
bp.before_request(require_tenant)


@bp.get("/v1/model")
def get_model() -> Response:
    """The served model: version, cutoff, and each input with its levels and training figures."""
    scorer = services().scorer
    params, profile = scorer.artifact.params, scorer.profile
    inputs: list[dict[str, Any]] = []
    for column in scorer.required_columns:
        if column in params.categorical_levels:
            train = profile.categorical[column]
            inputs.append({"column": column, "kind": "categorical", "levels": list(params.categorical_levels[column]),
                           "training_missing_rate": train.missing_rate,
                           "training_shares": dict(train.shares) if train.shares else None})
        else:
            figures = profile.numeric[column]
            inputs.append({"column": column, "kind": "numeric", "training_mean": figures.mean,
                           "training_sd": figures.sd, "training_missing_rate": figures.missing_rate})
    return json_response({"version": scorer.version, "sha256": scorer.sha256, "cutoff": scorer.cutoff,
                          "training_outcome_share": profile.outcome_share, "inputs": inputs,
                          "training_provenance": dict(profile.provenance)})


@bp.get("/v1/jobs/<job_id>/summary")
def get_summary(job_id: str) -> Response:
    """The summary of the chunks committed so far (all of them once the job is closed), beside training."""
    svc = services()
    job = svc.jobs.get(g.tenant, job_id_or_404(job_id))  # owner and expiry checks: 404 / 410 as for the job itself
    scorer = svc.scorer
    params = scorer.artifact.params
    figures = assemble(
        svc.jobs.store.summary_fields(job_id),
        rows_failed=int(job["rows_failed"]),
        cutoff=scorer.cutoff,
        numeric=params.numeric_columns,
        levels=params.categorical_levels,
        order=scorer.required_columns,
        profile=scorer.profile,
        thresholds=DriftThresholds.from_settings(svc.settings),
    )
    body = {"job_id": job_id, "state": job["state"], "chunks_done": job.get("chunks_done"),
            "chunks_total": job.get("chunks_total"), "model": job.get("model"), **figures}
    return json_response(body)
