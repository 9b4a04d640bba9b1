"""The document's schemas are generated from the types the code builds: real job objects, pages and errors
match them, and the constants in them are the code's."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from api.schemas import Job
from core.states import JobState
from jobs.keys import JOB_ID_MAX_LENGTH, new_job_id
from tests.unit.api.test_api_jobs import KEY_A, to_csv


@pytest.fixture
def client(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme", chunk_rows=4).test_client()


def _validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of component `name`, its references resolved within the document."""
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_jobs_pages_and_errors_match_their_schemas(client, make_rows, score_queued) -> None:
    doc = client.get("/openapi.json").get_json()
    created = client.post("/v1/jobs", data=to_csv(make_rows(10)), headers={**KEY_A, "Content-Type": "text/csv"})
    score_queued()
    job = client.get(created.get_json()["links"]["self"], headers=KEY_A).get_json()
    assert job["state"] == JobState.SUCCEEDED
    _validator(doc, "Job").validate(created.get_json())
    _validator(doc, "Job").validate(job)
    _validator(doc, "JobPage").validate(client.get("/v1/jobs", headers=KEY_A).get_json())
    _validator(doc, "Error").validate(client.get(f"/v1/jobs/{new_job_id(2**33)}", headers=KEY_A).get_json())
    # Every key the job object has is a property of its schema, and the other way round.
    assert set(job) == set(doc["components"]["schemas"]["Job"]["properties"]) == set(Job.__annotations__)


def test_states_and_job_ids_come_from_the_code(client) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["components"]["schemas"]["JobState"]["enum"] == [state.value for state in JobState]
    assert "expired" not in str(doc["components"]["schemas"]["JobState"]["enum"])  # an expired job answers 410
    job_id = next(p for p in doc["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"] if p["name"] == "job_id")
    assert job_id["schema"]["maxLength"] == JOB_ID_MAX_LENGTH
    assert re.fullmatch(job_id["schema"]["pattern"].strip("^$"), new_job_id(2**40))
    too_long = "a" * (JOB_ID_MAX_LENGTH + 1)
    assert client.get(f"/v1/jobs/{too_long}", headers=KEY_A).status_code == 404
