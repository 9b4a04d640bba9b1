"""Liveness, readiness, metrics, the OpenAPI document and the self-contained docs page."""

from __future__ import annotations

import re

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.auth import KeyRing
from api.services import Services
from predictq.settings import Settings
from worker.jobs import JobService


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


def test_metrics_expose_queue_gauges_and_counters(client, good_row) -> None:
    client.post("/predict", json=[good_row, good_row])
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^predictq_queued_rows 0\.0$", text, re.M)
    assert re.search(r"^predictq_queue_depth 0\.0$", text, re.M)
    assert re.search(r'^predictq_http_requests_total\{endpoint="predict.predict",status="200"\} \d', text, re.M)
    assert re.search(r"^predictq_predict_rows_total \d", text, re.M)


def test_openapi_documents_every_route(make_app) -> None:
    app = make_app()
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    routed = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routed


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
