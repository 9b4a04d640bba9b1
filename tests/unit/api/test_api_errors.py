"""The one JSON error shape: unknown routes, wrong methods, and real bugs answered without internals."""

from __future__ import annotations

from api.errors import ApiError, read_error_to_api
from model.readers import ReadError


def test_unknown_route_is_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.is_json
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


def test_wrong_method_is_json_405_with_allowed_methods(client) -> None:
    response = client.put("/v1/jobs")
    assert response.status_code == 405
    assert set(response.get_json()["error"]["details"]["allowed"]) >= {"GET", "POST"}


def test_a_bug_is_a_json_500_without_internals(make_app, caplog) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"] == {"code": "internal", "message": "internal server error",
                                            "details": {"request_id": response.headers["X-Request-Id"]}}
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text


def test_read_errors_map_to_statuses_with_position() -> None:
    mapped = read_error_to_api(ReadError("malformed", "bad comma", line=3, column=7))
    assert (mapped.status, mapped.code, mapped.details) == (400, "malformed", {"line": 3, "column": 7})
    assert read_error_to_api(ReadError("too_large", "big")).status == 413
    assert read_error_to_api(ReadError("unsupported_format", "x")).status == 415
    assert read_error_to_api(ReadError("something_new", "x")).status == 400


def test_api_error_carries_headers(make_app) -> None:
    app = make_app()

    @app.get("/slow")
    def slow() -> None:
        raise ApiError(503, "overloaded", "busy", {"n": 1}, {"Retry-After": "5"})

    response = app.test_client().get("/slow")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["details"] == {"n": 1, "request_id": response.headers["X-Request-Id"]}
