"""Liveness, readiness, metrics, the OpenAPI document and the self-contained docs page."""

from __future__ import annotations

import re

import jsonschema
import orjson
import redis
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry
from schemathesis.specs.openapi.definitions import OPENAPI_31

from api.auth import KeyRing
from api.services import Services
from core.settings import Settings
from jobs.service import JobService


def test_healthz(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_ready_with_redis_and_model(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["redis"] == "ok"
    assert response.get_json()["checks"]["model"].startswith("loaded ")


def test_readyz_is_503_when_redis_is_unreachable(make_app, scorer) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    app = make_app({"SERVICES": {"scorer": scorer, "redis": dead}})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"].startswith("unreachable")


def metric(text: str, name: str) -> float:
    """The value of one sample line `name value` in exposition text."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_metrics_count_predictions_and_requests(client, good_row) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", json=[good_row, good_row, good_row])
    after = client.get("/metrics").get_data(as_text=True)
    assert metric(after, "predictq_predict_rows_total") - metric(before, "predictq_predict_rows_total") == 3
    assert metric(after, "predictq_predict_seconds_count") - metric(before, "predictq_predict_seconds_count") == 1
    assert metric(after, 'predictq_http_requests_total{endpoint="predict.predict",status="200"}') >= 1


CSV_HEADER = b"x5,x12,x31,x44,x53,x56,x58,x62,x81,x91\n"
CSV_ROW = b"monday,1,asia,1,1,1,1,1,July,1\n"


def families(text: str) -> dict[str, Metric]:
    """Metric families of exposition text, parsed the way Prometheus reads them."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A family's samples keyed by (sample name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def test_metrics_report_jobs_by_state_and_queued_rows(client) -> None:
    assert client.post("/v1/jobs", data=CSV_HEADER + CSV_ROW * 7, content_type="text/csv").status_code == 202
    records = [dict(zip(CSV_HEADER.decode().strip().split(","), CSV_ROW.decode().strip().split(","), strict=True))]
    assert client.post("/v1/jobs", data=orjson.dumps(records * 7), content_type="application/json").status_code == 202
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, 'predictq_jobs{state="queued"}') == 2
    assert metric(text, 'predictq_jobs{state="running"}') == 0
    assert metric(text, 'predictq_jobs{state="succeeded"}') == 0
    assert metric(text, "predictq_queued_rows") == 7  # counted by the API for the JSON array only
    assert metric(text, "predictq_queued_bytes") >= len(CSV_ROW * 7)
    assert metric(text, "predictq_queue_depth") == 0  # the unit tests record tasks instead of using a broker
    assert metric(text, "predictq_redis_up") == 1


def test_metrics_count_rows_chunks_and_chunk_latency_after_scoring(make_app, score_queued) -> None:
    client = make_app(chunk_bytes=4 * len(CSV_ROW)).test_client()
    bad = b"monday,1,asia,1,1,1,1,1,July,oops\n"
    assert client.post("/v1/jobs", data=CSV_HEADER + CSV_ROW * 9 + bad, content_type="text/csv").status_code == 202
    assert score_queued() == 3
    parsed = families(client.get("/metrics").get_data(as_text=True))
    assert parsed["predictq_rows_scored"].type == "counter"
    assert samples(parsed["predictq_rows_scored"]) == {("predictq_rows_scored_total", ()): 9}
    assert samples(parsed["predictq_rows_failed"]) == {("predictq_rows_failed_total", ()): 1}
    assert samples(parsed["predictq_chunks"]) == {
        ("predictq_chunks_total", (("outcome", "scored"),)): 3,
        ("predictq_chunks_total", (("outcome", "failed"),)): 0,
    }
    assert samples(parsed["predictq_jobs"])[("predictq_jobs", (("state", "succeeded"),))] == 1
    histogram = parsed["predictq_chunk_seconds"]
    assert histogram.type == "histogram"
    got = samples(histogram)
    counts = [v for (name, _), v in got.items() if name == "predictq_chunk_seconds_bucket"]
    assert counts == sorted(counts) and len(counts) == 11  # cumulative, ten bounds then +Inf
    assert got[("predictq_chunk_seconds_bucket", (("le", "+Inf"),))] == got[("predictq_chunk_seconds_count", ())] == 3
    assert got[("predictq_chunk_seconds_sum", ())] > 0


def test_metrics_answer_without_redis(make_app, scorer) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    app = make_app({"SERVICES": {"scorer": scorer, "redis": dead, "jobs": JobService(dead, Settings())}})
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    parsed = families(response.get_data(as_text=True))
    assert samples(parsed["predictq_redis_up"]) == {("predictq_redis_up", ()): 0}
    assert "predictq_jobs" not in parsed and "predictq_rows_scored" not in parsed
    assert "predictq_http_requests" in parsed


def test_openapi_documents_every_route(make_app) -> None:
    app = make_app()
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    routed = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.endswith("static")  # the app's and the console's static files
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routed


def test_openapi_is_a_valid_openapi_31_document(client) -> None:
    doc = client.get("/openapi.json").get_json()
    assert list(jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(doc)) == []
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_openapi_reflects_the_row_limit(make_app) -> None:
    doc = make_app(max_sync_rows=77).test_client().get("/openapi.json").get_json()
    assert doc["components"]["schemas"]["PredictArray"]["maxItems"] == 77


def test_docs_page_is_self_contained(client) -> None:
    response = client.get("/docs")
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "/openapi.json" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)


def test_services_create_the_job_service_lazily_on_first_use(scorer) -> None:
    svc = Services(Settings(), KeyRing((), enabled=False), {"scorer": scorer})
    assert svc._redis is None
    assert isinstance(svc.jobs, JobService)
    assert svc.jobs is svc.jobs


def test_job_routes_answer_503_when_redis_is_down(make_app, scorer) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    settings = Settings(auth_mode="disabled")
    app = make_app({"SERVICES": {"scorer": scorer, "redis": dead, "jobs": JobService(dead, settings)}})
    response = app.test_client().get("/v1/jobs")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_readyz_is_503_when_the_store_is_at_its_reserve(make_app) -> None:
    app = make_app(store_reserve_bytes=10**6)
    app.extensions["predictq"].jobs.blobs.free_bytes = lambda: 10**6
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["store"] == "full: 1000000 bytes free, reserve 1000000"
    assert body["storage"]["store"]["free_bytes"] == 10**6
