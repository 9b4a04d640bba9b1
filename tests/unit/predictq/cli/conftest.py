"""A fake predictq server in a thread (no external process) speaking the /v1/jobs contract, for client tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request

from tests.support.http_server import serve_app

KEY = "test-key"


@dataclass
class FakeServer:
    """Records what clients sent; jobs advance one poll at a time from queued to `final_state`."""

    url: str = ""
    key: str = KEY
    final_state: str = "succeeded"
    polls_to_finish: int = 3
    uploads: list[dict[str, Any]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, "details": {}}}), status


def build_app(state: FakeServer) -> Flask:
    """A Flask app answering like the real API for the endpoints the client uses."""
    app = Flask(__name__)

    @app.before_request
    def auth() -> Any:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return _error(401, "unauthorized", "missing or unknown API key")
        return None

    @app.post("/v1/jobs")
    def submit() -> Any:
        body = request.stream.read()
        job_id = f"job{len(state.uploads) + 1}"
        state.uploads.append(
            {"content_type": request.content_type, "length": request.content_length, "body": body}
        )
        state.polls[job_id] = 0
        return jsonify({"id": job_id, "state": "queued"}), 202, {"Location": f"/v1/jobs/{job_id}"}

    @app.get("/v1/jobs/<job_id>")
    def status(job_id: str) -> Any:
        if job_id not in state.polls:
            return _error(404, "job_not_found", "job not found")
        state.polls[job_id] += 1
        done = state.polls[job_id] >= state.polls_to_finish
        progress = 1.0 if done else state.polls[job_id] / state.polls_to_finish
        return jsonify({"id": job_id, "state": state.final_state if done else "running", "progress": progress})

    @app.delete("/v1/jobs/<job_id>")
    def cancel(job_id: str) -> Any:
        if job_id not in state.polls:
            return _error(404, "job_not_found", "job not found")
        state.cancelled.append(job_id)
        return jsonify({"id": job_id, "state": "cancelled"})

    @app.get("/v1/jobs/<job_id>/summary")
    def summary(job_id: str) -> Any:
        if job_id not in state.polls:
            return _error(404, "job_not_found", "job not found")
        return jsonify({"job_id": job_id, "state": "succeeded", **summary_figures()})

    @app.get("/v1/jobs/<job_id>/results")
    def results(job_id: str) -> Any:
        if job_id not in state.polls:
            return _error(404, "job_not_found", "job not found")
        fmt = request.args.get("format", "json")
        lines = ["row,phat,format\n"] + [f"{i},0.5,{fmt}\n" for i in range(1000)]
        return Response((line.encode() for line in lines), mimetype="text/csv")

    return app


def summary_figures() -> dict[str, Any]:
    """A summary as the real service assembles it, for 1,000 rows of which 40 % are Mondays."""
    from jobs.summary import DriftThresholds, assemble
    from model.artifact import load_artifact
    from model.profile import profile_of

    artifact = load_artifact()
    params = artifact.params
    fields = {"rows": "1000", "outcome:1": "260", "phat:03": "400", "phat:14": "340", "phat:15": "260",
              "level:x5:monday": "400", "level:x5:friday": "600", "missing:x44": "30", "sum:x44": "485",
              "sumsq:x44": "320", "failed:unknown_level": "2"}
    return assemble(fields, rows_failed=2, cutoff=params.cutoff, numeric=params.numeric_columns,
                    levels=params.categorical_levels, order=params.required_columns, profile=profile_of(artifact),
                    thresholds=DriftThresholds())


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A running fake server on a free loopback port; stopped after the test."""
    state = FakeServer()
    with serve_app(build_app(state)) as state.url:
        yield state
