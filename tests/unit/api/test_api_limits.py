"""Rate limits per key (429, Retry-After, JSON) and backpressure on new jobs."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.limits import check_backpressure


def test_predict_limit_is_per_key_with_retry_after(make_app, good_row) -> None:
    app = make_app(auth_mode="required", api_keys="k1:acme,k2:globex", rate_limit_predict="2/minute")
    client = app.test_client()
    for _ in range(2):
        assert client.post("/predict", json=good_row, headers={"X-API-Key": "k1"}).status_code == 200
    refused = client.post("/predict", json=good_row, headers={"X-API-Key": "k1"})
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert client.post("/predict", json=good_row, headers={"X-API-Key": "k2"}).status_code == 200


def test_poll_and_predict_budgets_are_separate(make_app, good_row) -> None:
    client = make_app(rate_limit_predict="1/minute", rate_limit_poll="100/minute").test_client()
    assert client.post("/predict", json=good_row).status_code == 200
    assert client.post("/predict", json=good_row).status_code == 429
    assert client.get("/healthz").status_code == 200


def test_limits_can_be_switched_off_for_tests(make_app, good_row) -> None:
    client = make_app({"RATELIMIT_ENABLED": False}, rate_limit_predict="1/minute").test_client()
    assert [client.post("/predict", json=good_row).status_code for _ in range(3)] == [200, 200, 200]


def test_backpressure_refuses_over_budget_with_retry_after() -> None:
    check_backpressure(100, 100)
    with pytest.raises(ApiError) as refused:
        check_backpressure(101, 100)
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"].isdigit()
    assert refused.value.details == {"queued_rows": 101, "max_queued_rows": 100}
