"""/v1/jobs/<id>/summary and /v1/model on fakeredis, with the worker's chunk processing run in-process."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.api.bodies import KEY_A, KEY_B, to_csv


@pytest.fixture
def client(make_app):
    return make_app(auth_mode="required", api_keys="ka:acme,kb:globex", chunk_rows=4, drift_min_rows=1).test_client()


@pytest.fixture
def job(client, make_rows, score_queued):
    rows = make_rows(10)
    rows[2]["x5"] = "Funday"  # an unknown level: a row error
    rows[3]["x44"] = ""  # missing
    rows[4]["x81"] = ""  # missing
    rows[5]["x12"] = "lots"  # not a number
    created = client.post("/v1/jobs", data=to_csv(rows), headers={**KEY_A, "Content-Type": "text/csv"}).get_json()
    score_queued()
    return created


def test_summary_figures_equal_the_results(client, job):
    summary = client.get(job["links"]["summary"], headers=KEY_A)
    assert summary.status_code == 200
    body = summary.get_json()
    results = client.get(job["links"]["results"], headers=KEY_A).get_json()
    phat = np.array([r["phat"] for r in results])
    assert body["rows_scored"] == len(results) == 8
    assert body["phat_histogram"]["counts"] == np.histogram(phat, bins=20, range=(0, 1))[0].tolist()
    assert body["phat_histogram"]["edges"][0] == 0 and body["phat_histogram"]["edges"][-1] == 1
    outcome = body["business_outcome_1"]
    assert outcome["count"] == sum(r["business_outcome"] for r in results)
    assert outcome["cutoff"] == 0.712 and outcome["training_share"] == 0.25
    assert body["rows_failed"] == {"total": 2, "by_code": {"not_a_number": 1, "unknown_level": 1},
                                   "by_column": {"x12": 1, "x5": 1}}
    inputs = {item["column"]: item for item in body["inputs"]}
    assert [item["column"] for item in body["inputs"]] == ["x5", "x12", "x31", "x44", "x53", "x56", "x58", "x62",
                                                           "x81", "x91"]
    assert (inputs["x44"]["missing"], inputs["x81"]["missing"], inputs["x5"]["missing"]) == (1, 1, 0)
    x44 = [i / 7 for i in range(10) if i not in (2, 3, 5)]
    assert inputs["x44"]["mean"] == pytest.approx(np.mean(x44), rel=1e-12)
    assert inputs["x44"]["sd"] == pytest.approx(np.std(x44), rel=1e-9)
    shift = (np.mean(x44) - 0.500565465355232) / inputs["x44"]["training_sd"]
    assert inputs["x44"]["mean_shift"] == pytest.approx(shift)
    levels = {lv["level"]: lv for lv in inputs["x5"]["levels"]}
    assert levels["monday"]["count"] == 8 and levels["monday"]["share"] == 1.0
    assert levels["monday"]["training_share"] == 0.147
    kinds = {(w["kind"], w["column"]) for w in body["drift"]}
    assert ("level_share", "x5") in kinds and ("rows_failed", None) in kinds  # every row is a Monday
    assert ("missing_rate", "x44") in kinds  # 1 of 8 missing against 3 % in training


def test_summary_is_tenant_checked(client, job):
    assert client.get(job["links"]["summary"], headers=KEY_B).status_code == 404
    assert client.get(job["links"]["summary"]).status_code == 401
    missing = client.get("/v1/jobs/not-a-job!/summary", headers=KEY_A)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "job_not_found"


def test_summary_of_a_job_before_any_chunk_committed(client, make_rows):
    created = client.post("/v1/jobs", data=to_csv(make_rows(3)), headers={**KEY_A, "Content-Type": "text/csv"})
    body = client.get(created.get_json()["links"]["summary"], headers=KEY_A).get_json()
    assert body["rows_scored"] == 0 and sum(body["phat_histogram"]["counts"]) == 0
    assert body["business_outcome_1"]["share"] is None and body["drift"] == []


def test_model_lists_inputs_with_levels_and_training_figures(client):
    assert client.get("/v1/model").status_code == 401
    model = client.get("/v1/model", headers=KEY_A).get_json()
    assert model["cutoff"] == 0.712 and model["version"].startswith("glm26-approved")
    inputs = {item["column"]: item for item in model["inputs"]}
    assert inputs["x5"]["levels"][0] == "friday" and inputs["x81"]["kind"] == "categorical"
    assert inputs["x44"]["training_missing_rate"] == 0.03
    assert inputs["x12"]["training_mean"] == pytest.approx(20.4853, 1e-4)


def test_summary_and_model_match_the_openapi_document(client, job):
    import jsonschema

    doc = client.get("/openapi.json").get_json()
    summary = client.get(job["links"]["summary"], headers=KEY_A).get_json()
    # The component, resolving its references ($ref to other components) within the document.
    summary_schema = {"$ref": "#/components/schemas/JobSummary", "components": doc["components"]}
    jsonschema.Draft202012Validator(summary_schema).validate(summary)
    model_schema = doc["paths"]["/v1/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(model_schema).validate(client.get("/v1/model", headers=KEY_A).get_json())
