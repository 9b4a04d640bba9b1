"""POST /predict: shapes, order, limits, and every kind of bad body answered with a clear 4xx."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from flask.testing import FlaskClient


def post(client: FlaskClient, body: bytes | object, content_type: str = "application/json"):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def test_single_object_answers_one_sorted_object(client: FlaskClient, good_row) -> None:
    response = post(client, good_row)
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, dict)
    assert list(body) == sorted(body)
    assert {"business_outcome", "phat"} <= set(body)
    assert len(body) == 27
    assert 0.0 < body["phat"] < 1.0


def test_array_answers_in_input_order(client: FlaskClient, scorer, good_row) -> None:
    rows = [{**good_row, "x44": float(i)} for i in range(5)]
    response = post(client, rows)
    assert response.status_code == 200
    expected = scorer.score_records(rows).to_records()
    assert response.get_json() == expected


def test_bad_element_is_answered_in_place_and_others_score(client: FlaskClient, good_row) -> None:
    rows = [good_row, {**good_row, "x5": "someday"}, 17, good_row]
    body = post(client, rows).get_json()
    assert "phat" in body[0] and "phat" in body[3]
    assert set(body[1]) == {"error"} and set(body[1]["error"]) == {"code", "message", "details"}
    assert body[1]["error"]["code"] == "invalid_row"
    assert body[1]["error"]["details"] == {"row": 1, "column": "x5"}
    assert "someday" in body[1]["error"]["message"]
    assert body[2]["error"]["details"] == {"row": 2, "column": None}


def test_single_bad_row_is_400_naming_the_column(client: FlaskClient, good_row) -> None:
    response = post(client, {**good_row, "x31": "atlantis"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_row"
    assert error["details"]["column"] == "x31"


def test_max_rows_answers_200_and_one_more_answers_413(make_app, good_row) -> None:
    client = make_app(max_sync_rows=50).test_client()
    assert post(client, [good_row] * 50).status_code == 200
    response = post(client, [good_row] * 51)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_many_rows"
    assert "/v1/jobs" in error["message"]


def test_oversized_body_is_413_before_parsing(make_app) -> None:
    client = make_app(max_sync_rows=1).test_client()
    response = post(client, b"[" + b" " * 20_000 + b"]")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[]", "empty"),
        (b'{"x5": ', "malformed"),
        (b'{"x44": NaN', "malformed"),
        (b'{"x5": "\\ud800", "x44": NaN}', "malformed"),
        (b'[{"x44": NaN}, {"x5": "\\udfff"}]', "malformed"),
        (b'"just a string"', "malformed"),
        (b"[" * 5000 + b"]" * 5000, "malformed"),
        (b'{"x5": "\xff\xfe"}', "malformed"),
    ],
)
def test_unreadable_bodies_are_400(client: FlaskClient, body: bytes, code: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


def test_malformed_json_names_line_and_column(client: FlaskClient) -> None:
    response = post(client, b'[\n {"x5": "monday",,}\n]')
    details = response.get_json()["error"]["details"]
    assert details["line"] == 2
    assert details["column"] > 1


@pytest.mark.parametrize("content_type", ["text/csv", "text/plain", ""])
def test_wrong_or_missing_content_type_is_415(client: FlaskClient, content_type: str, good_row) -> None:
    response = client.post("/predict", data=orjson.dumps(good_row), headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_numbers_as_strings_and_huge_integers_score(client: FlaskClient, scorer, good_row) -> None:
    rows = [{**good_row, "x44": "0.5"}, {**good_row, "x44": 123456789012345678901234567890}]
    body = post(client, json.dumps(rows).encode()).get_json()
    assert body[0]["phat"] == post(client, {**good_row, "x44": 0.5}).get_json()["phat"]
    assert body[1]["phat"] == pytest.approx(0.0, abs=1e-9) or body[1]["phat"] == pytest.approx(1.0, abs=1e-9)


def test_nonfinite_literals_are_read_as_job_uploads_read_them(client: FlaskClient, good_row) -> None:
    row = orjson.dumps(good_row)[:-1]
    extras = (b', "x44": NaN', b', "x44": 1e400', b', "x44": -Infinity')
    body = b"[" + b",".join(row + extra + b"}" for extra in extras) + b"]"
    answered = post(client, body).get_json()
    assert "phat" in answered[0]  # NaN is a missing value
    details = [answered[i]["error"]["details"] for i in (1, 2)]
    assert details == [{"row": 1, "column": "x44"}, {"row": 2, "column": "x44"}]
    single = post(client, row + b', "x44": Infinity}')
    assert single.status_code == 400
    assert single.get_json()["error"]["details"]["column"] == "x44"


def test_get_is_405_with_allow(client: FlaskClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_first_record_must_carry_the_required_columns(client: FlaskClient, good_row) -> None:
    response = post(client, {"x5": "monday", "x12": "1"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "missing_columns"
    assert error["details"]["missing"] == ["x31", "x44", "x53", "x56", "x58", "x62", "x81", "x91"]
    assert post(client, [good_row, {"x5": "friday"}]).status_code == 200  # later rows: absent keys are missing
    assert post(client, {**good_row, "x44": None}).status_code == 200


@pytest.mark.parametrize("digits", [309, 400, 5000])
def test_a_huge_integer_literal_is_a_row_error_of_its_row_only(client: FlaskClient, good_row, digits: int) -> None:
    row = orjson.dumps(good_row)[:-1]
    body = b"[" + row + b"}," + row + b', "x44": ' + b"9" * digits + b"}," + row + b"}]"
    response = post(client, body)
    assert response.status_code == 200
    answered = response.get_json()
    assert "phat" in answered[0] and "phat" in answered[2]
    assert answered[1]["error"]["code"] == "invalid_row"
    assert answered[1]["error"]["details"] == {"row": 1, "column": "x44"}
    single = post(client, row + b', "x44": -' + b"9" * digits + b"}")
    assert single.status_code == 400
    assert single.get_json()["error"]["details"] == {"row": 0, "column": "x44",
                                                     "request_id": single.headers["X-Request-Id"]}


def test_a_malformed_body_with_a_huge_integer_is_still_malformed(client: FlaskClient, good_row) -> None:
    response = post(client, b'[{"x44": ' + b"9" * 400 + b",}]")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed"


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "UTF-16"])
def test_a_declared_charset_other_than_utf8_is_415_naming_it(client: FlaskClient, good_row, charset: str) -> None:
    response = post(client, good_row, content_type=f"application/json; charset={charset}")
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["charset"]) == ("unsupported_media_type", charset)
    assert charset in error["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json; charset=UTF8"])
def test_utf8_charset_is_accepted(client: FlaskClient, good_row, content_type: str) -> None:
    assert post(client, good_row, content_type=content_type).status_code == 200


def test_in_band_row_errors_match_the_documented_schema(client: FlaskClient, good_row) -> None:
    doc = client.get("/openapi.json").get_json()
    schema = {**doc["components"]["schemas"]["RowError"], "components": doc["components"]}
    answered = post(client, [good_row, {**good_row, "x81": "Smarch"}, [1]]).get_json()
    for element in answered[1:]:
        jsonschema.validate(element, schema)
    assert [e["error"]["details"]["column"] for e in answered[1:]] == ["x81", None]
